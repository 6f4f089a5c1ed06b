"""The `modelhost` command run as users run it: a subprocess against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import iris_classifier, iris_rows
from tests.support.server import ServerProcess, free_port

MISSING_MODEL = "s3://models/nowhere/model.tar.gz"


def _csv(rows: list[list[float]]) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in rows)


@pytest.fixture(scope="module")
def cli(server: ServerProcess):
    """The CLI pointed at the session server through MODELHOST_URL."""

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={"MODELHOST_URL": server.url})

    return call


@pytest.fixture(scope="module")
def live(sagemaker, iris_model_url: str) -> str:
    return deploy(sagemaker, iris_model_url)


@pytest.fixture(scope="module")
def failed(sagemaker) -> str:
    name = deploy(sagemaker, MISSING_MODEL, wait=False)
    wait_for_status(sagemaker, name, {"Failed"})
    return name


def test_endpoints_list_shows_status_and_counts(cli, live: str, failed: str) -> None:
    result = cli("endpoints", "list")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if live in line)
    assert "InService" in line and "1/1" in line
    line = next(line for line in result.stdout.splitlines() if failed in line)
    assert "Failed" in line and "0/1" in line

    only = cli("endpoints", "list", "--name-contains", live, "--status", "InService")
    assert live in only.stdout and failed not in only.stdout


def test_endpoints_describe_shows_variants(cli, live: str) -> None:
    result = cli("endpoints", "describe", live)
    assert result.returncode == 0, result.stderr
    assert "InService" in result.stdout and f"endpoint/{live}" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "AllTraffic" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "AllTraffic",
        "ml.m5.large",
        "1",
        "1",
        "1.0",
    ]
    assert "Failure reason" not in result.stdout


def test_describe_failed_endpoint_shows_reason(cli, failed: str) -> None:
    result = cli("endpoints", "describe", failed)
    assert result.returncode == 0, result.stderr
    assert "Failure reason" in result.stdout and "no model data" in result.stdout


def test_json_output_parses(cli, live: str) -> None:
    described = json.loads(cli("endpoints", "describe", live, "--json").stdout)
    assert described["EndpointStatus"] == "InService"
    assert "ResponseMetadata" not in described
    assert datetime.fromisoformat(described["CreationTime"]).tzinfo is not None

    listed = json.loads(cli("endpoints", "list", "--json", "--name-contains", live).stdout)
    assert [e["EndpointName"] for e in listed["Endpoints"]] == [live]

    models = json.loads(cli("models", "list", "--json").stdout)
    assert live in [m["ModelName"] for m in models["Models"]]
    model = json.loads(cli("models", "describe", live, "--json").stdout)
    assert model["PrimaryContainer"]["Image"] == "modelhost/sklearn"

    configs = json.loads(cli("endpoint-configs", "list", "--json").stdout)
    assert live in [c["EndpointConfigName"] for c in configs["EndpointConfigs"]]
    config = json.loads(cli("endpoint-configs", "describe", live, "--json").stdout)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"


def test_models_and_configs_tables(cli, live: str, iris_model_url: str) -> None:
    assert live in cli("models", "list").stdout
    model = cli("models", "describe", live).stdout
    assert "modelhost/sklearn" in model and iris_model_url in model
    assert live in cli("endpoint-configs", "list").stdout
    config = cli("endpoint-configs", "describe", live).stdout
    row = next(line for line in config.splitlines() if "AllTraffic" in line)
    assert live in row and "ml.m5.large" in row


def test_wait_in_service(cli, live: str) -> None:
    result = cli("endpoints", "wait", live)
    assert result.returncode == 0, result.stderr
    assert f"{live} is InService" in result.stdout


def test_wait_follows_a_creating_endpoint(cli, sagemaker, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url, wait=False)
    result = cli("endpoints", "wait", name, "--timeout", "90", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def test_wait_failed_endpoint_exits_with_reason(cli, failed: str) -> None:
    result = cli("endpoints", "wait", failed)
    assert result.returncode == 1
    assert f"error: {failed} is Failed" in result.stderr
    assert MISSING_MODEL in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("models", "describe"), "ValidationException"),
        (("endpoint-configs", "describe"), "ValidationException"),
        (("endpoints", "describe"), "ValidationException"),
        (("endpoints", "wait"), "ValidationException"),
        (("endpoints", "delete"), "ValidationException"),
        (("endpoints", "invoke", "--body", "1,2,3,4"), "ValidationError"),
    ],
)
def test_unknown_names_exit_1_with_the_error(cli, args: tuple[str, ...], code: str) -> None:
    name = unique("missing")
    result = cli(*args[:2], name, *args[2:])
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {code}: ")
    assert name in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_invoke_prints_predictions(cli, live: str, tmp_path: Path) -> None:
    rows = iris_rows(3)
    expected = iris_classifier().predict(rows).tolist()

    result = cli("endpoints", "invoke", live, "--content-type", "text/csv", "--body", _csv(rows))
    assert result.returncode == 0, result.stderr
    assert [int(float(x)) for x in result.stdout.split()] == expected
    assert "variant: AllTraffic" in result.stderr

    body = tmp_path / "rows.json"
    body.write_text(json.dumps(rows))
    result = cli(
        "endpoints",
        "invoke",
        live,
        "--content-type",
        "application/json",
        "--accept",
        "application/json",
        "--body-file",
        str(body),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


def test_invoke_model_error(cli, live: str) -> None:
    result = cli("endpoints", "invoke", live, "--body", "not,a,number")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ModelError: ")
    assert "Traceback" not in result.stderr


def test_invoke_needs_exactly_one_body(cli, live: str) -> None:
    result = cli("endpoints", "invoke", live)
    assert result.returncode != 0 and "--body" in result.stderr


def test_delete(cli, sagemaker, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url)
    result = cli("endpoints", "delete", name)
    assert result.returncode == 0, result.stderr
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def test_endpoint_url_flag_and_no_credentials(
    server: ServerProcess, live: str, tmp_path: Path
) -> None:
    """Works out of the box: no AWS variables, no ~/.aws, URL given as a flag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MODELHOST_URL"}
    env |= {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "modelhost", "endpoints", "list", "--endpoint-url", server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert live in result.stdout


def test_no_server_is_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("endpoints", "list", url=url)
    assert result.returncode == 1
    assert f"no modelhost server at {url}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("address", ["127.0.0.1:8765", "localhost:8765"])
def test_server_address_without_a_scheme_is_one_line(address: str) -> None:
    result = run_cli("endpoints", "list", env={"MODELHOST_URL": address})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: the server address {address!r} (--endpoint-url / MODELHOST_URL) is not an "
        f"http:// or https:// URL; e.g. http://{address}"
    ]


def test_server_command_still_there() -> None:
    result = run_cli("server", "--help")
    assert result.returncode == 0 and "--data-dir" in result.stdout
