"""The AWS CLI, unchanged, pointed at modelhost: the promise that any SageMaker
client works by setting --endpoint-url."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore
import pytest

from tests.support.aws import aws_cli_env
from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import iris_classifier, iris_rows
from tests.support.server import ServerProcess

AWS = Path(sys.executable).parent / "aws"
ROLE = "arn:aws:iam::000000000000:role/any"

pytestmark = pytest.mark.skipif(not AWS.exists(), reason=f"AWS CLI not installed at {AWS}")


def _fast_waiters(folder: Path) -> Path:
    """botocore's own SageMaker waiters with a 1 s delay instead of 30 s, found by the CLI
    through AWS_DATA_PATH; the acceptors (what counts as in service, deleted, failed) stay
    exactly botocore's, which is what these tests check against our responses."""
    source = Path(botocore.__file__).parent / "data" / "sagemaker" / "2017-07-24"
    waiters = json.loads((source / "waiters-2.json").read_text())
    for waiter in waiters["waiters"].values():
        waiter["delay"] = 1
    target = folder / "sagemaker" / "2017-07-24"
    target.mkdir(parents=True)
    (target / "waiters-2.json").write_text(json.dumps(waiters))
    return folder


@pytest.fixture(scope="module")
def aws(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory):
    """`aws <args>` against the server; returns the completed process (text)."""
    home = tmp_path_factory.mktemp("aws-home")
    env = aws_cli_env(home, AWS_DATA_PATH=str(_fast_waiters(home / "models")))

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(AWS),
                *args,
                "--endpoint-url",
                server.url,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    return call


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"{result.args}\n{result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else None


@pytest.fixture(scope="module")
def endpoint(aws, iris_model_url: str) -> str:
    """Model -> config -> endpoint, all through the AWS CLI, waited on with its waiter."""
    name = unique("awscli")
    ok(
        aws(
            "sagemaker",
            "create-model",
            "--model-name",
            name,
            "--execution-role-arn",
            ROLE,
            "--primary-container",
            json.dumps({"Image": "modelhost/sklearn", "ModelDataUrl": iris_model_url}),
        )
    )
    ok(
        aws(
            "sagemaker",
            "create-endpoint-config",
            "--endpoint-config-name",
            name,
            "--production-variants",
            json.dumps(
                [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": name,
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                        "InitialVariantWeight": 1.0,
                    }
                ]
            ),
        )
    )
    created = ok(
        aws("sagemaker", "create-endpoint", "--endpoint-name", name, "--endpoint-config-name", name)
    )
    assert created["EndpointArn"].endswith(f":endpoint/{name}")
    ok(aws("sagemaker", "wait", "endpoint-in-service", "--endpoint-name", name))
    return name


def test_describe_endpoint(aws, endpoint: str) -> None:
    described = ok(aws("sagemaker", "describe-endpoint", "--endpoint-name", endpoint))
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == endpoint
    [variant] = described["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["CurrentInstanceCount"] == variant["DesiredInstanceCount"] == 1


def test_list_endpoints_and_models(aws, endpoint: str) -> None:
    listed = ok(aws("sagemaker", "list-endpoints", "--name-contains", endpoint))
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed["Endpoints"]] == [
        (endpoint, "InService")
    ]
    # without a filter the CLI follows NextToken itself
    everything = ok(aws("sagemaker", "list-endpoints"))
    assert endpoint in [e["EndpointName"] for e in everything["Endpoints"]]
    models = ok(aws("sagemaker", "list-models", "--name-contains", endpoint))
    assert [m["ModelName"] for m in models["Models"]] == [endpoint]
    configs = ok(aws("sagemaker", "list-endpoint-configs", "--name-contains", endpoint))
    assert [c["EndpointConfigName"] for c in configs["EndpointConfigs"]] == [endpoint]


def test_tags(aws, endpoint: str) -> None:
    arn = ok(aws("sagemaker", "describe-endpoint", "--endpoint-name", endpoint))["EndpointArn"]
    ok(
        aws(
            "sagemaker",
            "add-tags",
            "--resource-arn",
            arn,
            "--tags",
            "Key=team,Value=search",
            "Key=env,Value=test",
        )
    )
    tags = ok(aws("sagemaker", "list-tags", "--resource-arn", arn))["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "search", "env": "test"}


def test_invoke_endpoint(aws, endpoint: str, tmp_path: Path) -> None:
    rows = iris_rows(3)
    body = tmp_path / "body.csv"
    body.write_text("\n".join(",".join(str(v) for v in row) for row in rows))
    outfile = tmp_path / "out.csv"
    answer = ok(
        aws(
            "sagemaker-runtime",
            "invoke-endpoint",
            "--endpoint-name",
            endpoint,
            "--body",
            f"fileb://{body}",
            "--content-type",
            "text/csv",
            "--accept",
            "text/csv",
            str(outfile),
        )
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ContentType"].startswith("text/csv")
    predictions = [int(float(x)) for x in outfile.read_text().split()]
    assert predictions == iris_classifier().predict(rows).tolist()


def test_delete_endpoint_and_wait(aws, sagemaker, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url)
    ok(aws("sagemaker", "delete-endpoint", "--endpoint-name", name))
    ok(aws("sagemaker", "wait", "endpoint-deleted", "--endpoint-name", name))
    missing = aws("sagemaker", "describe-endpoint", "--endpoint-name", name)
    assert missing.returncode != 0 and "ValidationException" in missing.stderr


def test_waiter_stops_on_failed_endpoint(aws, sagemaker) -> None:
    name = deploy(sagemaker, "s3://models/nowhere/model.tar.gz", wait=False)
    wait_for_status(sagemaker, name, {"Failed"})
    result = aws("sagemaker", "wait", "endpoint-in-service", "--endpoint-name", name)
    assert result.returncode != 0
    assert "terminal failure state" in result.stderr


def test_unknown_endpoint_is_a_validation_exception(aws) -> None:
    result = aws("sagemaker", "describe-endpoint", "--endpoint-name", unique("missing"))
    assert result.returncode != 0
    assert "ValidationException" in result.stderr
    assert "Could not find endpoint" in result.stderr


def test_cloudwatch_alarms(aws) -> None:
    name = unique("cli-alarm")
    ok(
        aws(
            "cloudwatch",
            "put-metric-alarm",
            "--alarm-name",
            name,
            "--namespace",
            "AWS/SageMaker",
            "--metric-name",
            "CPUUtilization",
            "--statistic",
            "Average",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "80",
            "--comparison-operator",
            "GreaterThanThreshold",
            "--dimensions",
            "Name=EndpointName,Value=e",
            "Name=VariantName,Value=AllTraffic",
        )
    )
    alarms = ok(aws("cloudwatch", "describe-alarms", "--alarm-names", name))["MetricAlarms"]
    assert [(a["AlarmName"], a["Threshold"]) for a in alarms] == [(name, 80.0)]
    ok(aws("cloudwatch", "delete-alarms", "--alarm-names", name))
    missing = aws("cloudwatch", "delete-alarms", "--alarm-names", name)
    assert missing.returncode != 0 and "ResourceNotFound" in missing.stderr
