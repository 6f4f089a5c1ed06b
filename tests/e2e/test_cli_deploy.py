"""`modelhost deploy` and the other client commands around it, run as a user runs them:
a subprocess against a bare server with nothing but MODELHOST_URL set, the upload going
through the S3 API the server serves on its own port. One test keeps a separate S3
endpoint (a moto server, configured the AWS way with AWS_ENDPOINT_URL_S3 for the server
and the CLI): a user-given S3 endpoint wins over the server's own."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import isolated_environ
from tests.support.cli import run_cli
from tests.support.endpoints import deployed
from tests.support.models import iris_classifier, iris_model_bytes, iris_rows
from tests.support.moto import moto_server
from tests.support.server import ServerProcess

HANDLER = """
import json
from pathlib import Path


def model_fn(model_dir):
    return (Path(model_dir) / "greeting.txt").read_text().strip()


def transform_fn(model, body, content_type, accept):
    return json.dumps({"greeting": model, "got": json.loads(body)}), "application/json"
"""


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """A bare server: its own S3 API is the only object store."""
    server = ServerProcess(tmp_path_factory.mktemp("deploy") / "data").start()
    yield server
    server.stop()


def _bare_env(url: str) -> dict[str, str]:
    """A user's environment: MODELHOST_URL and nothing that steers boto3 elsewhere."""
    return isolated_environ(dict(os.environ), {"MODELHOST_URL": url})


def _cli_in(env: dict[str, str]):
    def call(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelhost", *args],
            capture_output=True,
            text=True,
            env={**env, "COLUMNS": "200"},
            timeout=timeout,
            check=False,
        )

    return call


@pytest.fixture
def cli(s3_server: ServerProcess):
    return _cli_in(_bare_env(s3_server.url))


def _s3(server: ServerProcess):
    return server.client("s3")


def _folder(root: Path, greeting: str) -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(HANDLER)
    (root / "requirements.txt").write_text("# nothing beyond the image's packages\n")
    (root / "greeting.txt").write_text(greeting)
    return root


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _invoke_json(s3_server: ServerProcess, name: str, body: object) -> dict:
    answer = s3_server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps(body)
    )
    return json.loads(answer["Body"].read())


def test_deploy_a_model_file(cli, s3_server: ServerProcess, tmp_path) -> None:
    model = tmp_path / "iris.joblib"
    model.write_bytes(iris_model_bytes())
    name = "iris-file"
    deployed.append((s3_server.client("sagemaker"), name))
    out = _ok(cli("deploy", str(model), "--name", name, "--count", "2"))
    assert f"{name} is InService" in out
    assert f"modelhost endpoints invoke {name} --content-type text/csv" in out
    # the printed command works as printed
    command = next(line.strip() for line in out.splitlines() if "endpoints invoke" in line)
    args = command.split(" ", 1)[1]
    answer = _ok(cli(*_split(args)))
    assert answer.strip() == str(iris_classifier().predict(iris_rows(1))[0])

    sagemaker = s3_server.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 2)
    model_url = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"][
        "ModelDataUrl"
    ]
    bucket, _, key = model_url.removeprefix("s3://").partition("/")
    # uploaded through the server's S3 API into its embedded store
    stored = s3_server.data_dir / "objects" / bucket / key
    assert (
        stored.stat().st_size == _s3(s3_server).head_object(Bucket=bucket, Key=key)["ContentLength"]
    )

    # a second deploy under the name without --update is refused, saying what to do
    again = cli("deploy", str(model), "--name", name)
    assert again.returncode == 1 and "--update" in again.stderr


def _split(args: str) -> list[str]:
    import shlex

    return shlex.split(args)


def test_deploy_a_folder_then_update_it(cli, s3_server: ServerProcess, tmp_path) -> None:
    name = "greeter"
    deployed.append((s3_server.client("sagemaker"), name))
    _ok(cli("deploy", str(_folder(tmp_path / "v1", "hello")), "--name", name))
    assert _invoke_json(s3_server, name, [1]) == {"greeting": "hello", "got": [1]}
    sagemaker = s3_server.client("sagemaker")
    first = sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"]

    out = _ok(cli("deploy", str(_folder(tmp_path / "v2", "bonjour")), "--name", name, "--update"))
    assert f"{name} is InService" in out
    assert _invoke_json(s3_server, name, [2]) == {"greeting": "bonjour", "got": [2]}
    second = sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    assert second != first
    image = sagemaker.describe_model(
        ModelName=sagemaker.describe_endpoint_config(EndpointConfigName=second)[
            "ProductionVariants"
        ][0]["ModelName"]
    )["PrimaryContainer"]["Image"]
    assert image == "modelhost/python"

    missing = cli("deploy", str(tmp_path / "v2"), "--name", "never-made", "--update")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_deploy_serverless(cli, s3_server: ServerProcess, tmp_path) -> None:
    name = "greeter-serverless"
    deployed.append((s3_server.client("sagemaker"), name))
    _ok(cli("deploy", str(_folder(tmp_path / "m", "hi")), "--name", name, "--serverless", "2048"))
    assert _invoke_json(s3_server, name, {"a": 1}) == {"greeting": "hi", "got": {"a": 1}}
    sagemaker = s3_server.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    )
    assert config["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 2048


def test_deploy_async_and_invoke_async(cli, s3_server: ServerProcess, tmp_path) -> None:
    name = "greeter-async"
    deployed.append((s3_server.client("sagemaker"), name))
    out = _ok(cli("deploy", str(_folder(tmp_path / "m", "later")), "--name", name, "--async"))
    assert f"modelhost endpoints invoke-async {name}" in out
    _s3(s3_server).put_object(Bucket="models", Key="inputs/one.json", Body=b'{"x": 1}')
    answer = _ok(
        cli(
            "endpoints",
            "invoke-async",
            name,
            "--input-location",
            "s3://models/inputs/one.json",
            "--content-type",
            "application/json",
            "--wait",
        )
    )
    assert "output:  s3://models/greeter-async/async/out/" in answer
    assert json.loads(answer.splitlines()[-1]) == {"greeting": "later", "got": {"x": 1}}


def test_refusals_are_one_line(cli, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    result = cli("deploy", str(tmp_path / "notes.txt"), "--name", "nope")
    assert result.returncode == 2 and "not a model file" in result.stderr
    both = cli("deploy", str(tmp_path), "--name", "nope", "--serverless", "2048", "--async")
    assert both.returncode == 2 and "cannot be combined" in both.stderr


def test_models_and_configs_create_and_delete(cli, s3_server: ServerProcess) -> None:
    _s3(s3_server).create_bucket(Bucket="plain")
    _s3(s3_server).put_object(Bucket="plain", Key="m.tar.gz", Body=b"x")
    arn = _ok(
        cli(
            "models",
            "create",
            "plain-model",
            "--model-data-url",
            "s3://plain/m.tar.gz",
            "--env",
            "A=1",
        )
    )
    assert arn.strip().endswith(":model/plain-model")
    sagemaker = s3_server.client("sagemaker")
    assert sagemaker.describe_model(ModelName="plain-model")["PrimaryContainer"]["Environment"] == {
        "A": "1"
    }
    _ok(cli("endpoint-configs", "create", "plain-config", "--model", "plain-model", "--count", "3"))
    variant = sagemaker.describe_endpoint_config(EndpointConfigName="plain-config")[
        "ProductionVariants"
    ][0]
    assert variant["InitialInstanceCount"] == 3
    _ok(cli("endpoint-configs", "delete", "plain-config"))
    _ok(cli("models", "delete", "plain-model"))
    assert sagemaker.list_models(NameContains="plain-model")["Models"] == []
    assert sagemaker.list_endpoint_configs(NameContains="plain-config")["EndpointConfigs"] == []


def test_version() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"modelhost {version('modelhost')}"


class _AccessLogged(ServerProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--access-log"]


def test_server_prints_its_url_and_an_access_log(tmp_path) -> None:
    server = _AccessLogged(tmp_path / "data").start()
    try:
        server.client("sagemaker").list_models()
        # InvokeEndpoint is answered off ASGI (modelhost.runtime.protocol): logged alike
        with contextlib.suppress(ClientError):
            server.client("sagemaker-runtime").invoke_endpoint(EndpointName="none", Body=b"1")
        deadline = time.monotonic() + 10
        while "invocations HTTP" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = server.log()
    finally:
        server.stop()
    assert f"modelhost listening on http://127.0.0.1:{server.port}" in log
    assert "POST / HTTP/1.1" in log and " 200" in log
    assert '"POST /endpoints/none/invocations HTTP/1.1" 400' in log
    assert "Logging error" not in log
    quiet = ServerProcess(tmp_path / "quiet").start()
    try:
        quiet.client("sagemaker").list_models()
    finally:
        quiet.stop()
    assert "modelhost listening on" in quiet.log() and "POST / HTTP" not in quiet.log()


def test_a_given_s3_endpoint_wins_over_the_servers_own(tmp_path) -> None:
    """AWS_ENDPOINT_URL_S3, set for the server and the CLI alike, is where the model goes:
    the upload lands in that S3 server and not in the embedded store."""
    model = tmp_path / "iris.joblib"
    model.write_bytes(iris_model_bytes())
    with moto_server() as s3:
        server = ServerProcess(
            tmp_path / "data", env={"AWS_ENDPOINT_URL_S3": s3.endpoint_url}
        ).start()
        name = "iris-moto"
        try:
            call = _cli_in(_bare_env(server.url) | {"AWS_ENDPOINT_URL_S3": s3.endpoint_url})
            _ok(call("deploy", str(model), "--name", name))
            sagemaker = server.client("sagemaker")
            config = sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"]
            model_url = sagemaker.describe_model(ModelName=config)["PrimaryContainer"][
                "ModelDataUrl"
            ]
            bucket, _, key = model_url.removeprefix("s3://").partition("/")
            assert s3.s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
            assert not (server.data_dir / "objects" / bucket / key).exists()
            sagemaker.delete_endpoint(EndpointName=name)
        finally:
            server.stop()


def test_an_object_store_that_cannot_be_reached_is_one_line(tmp_path) -> None:
    """Where the upload cannot go (here: an S3 endpoint nobody listens on), the command
    says where it tried and what to do instead."""
    from tests.support.server import free_port

    model = tmp_path / "iris.joblib"
    model.write_bytes(iris_model_bytes())
    server = ServerProcess(tmp_path / "data").start()
    try:
        result = run_cli(
            "deploy",
            str(model),
            "--name",
            "nowhere",
            env={
                "MODELHOST_URL": server.url,
                "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}",
            },
        )
    finally:
        server.stop()
    assert result.returncode == 1, result.stderr
    assert "could not put the model in the object store" in result.stderr
    assert "Traceback" not in result.stderr
