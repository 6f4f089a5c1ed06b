"""Deployment guardrails end to end: UpdateEndpoint with a DeploymentConfig against a real
server (alarms evaluated every half second), under steady traffic from boto3 clients.

The old config's variant is Blue and the new one's Green, so the variant header of each
answer says which fleet served it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.autoscaling import FAST_AUTOSCALING
from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import put_breakable_model, put_iris_model
from tests.support.server import ServerProcess, running_server
from tests.support.traffic import Traffic, error_codes

ROW = b"5.1,3.5,1.4,0.2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("guardrails") / "data", env=FAST_AUTOSCALING
    ) as process:
        put_iris_model(process.data_dir)
        yield process


def _green_config(sm, endpoint: str, count: int = 1, model: str | None = None) -> str:
    name = f"{endpoint}-green"
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "Green",
                "ModelName": model or endpoint,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
    )
    return name


def _green_alarm(cw, endpoint: str) -> str:
    """An alarm that fires as soon as the new fleet answers anything."""
    alarm = f"{endpoint}-green-invoked"
    cw.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "Green"},
        ],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    return alarm


def _variants(rt, endpoint: str, requests: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(requests):
        answer = rt.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=ROW)
        seen[answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"]] += 1
    return seen


def _pending(sm, endpoint: str) -> dict[str, Any] | None:
    described = sm.describe_endpoint(EndpointName=endpoint)
    variants = described.get("PendingDeploymentSummary", {}).get("ProductionVariants")
    return None if not variants else variants[0]


def _wait_for_step(sm, endpoint: str, text: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = _pending(sm, endpoint)
        if pending is not None and text in pending["VariantStatus"][0]["StatusMessage"]:
            return pending
        time.sleep(0.1)
    raise AssertionError(f"the update of {endpoint} never reported {text!r}")


def _share_during_step(sm, rt, endpoint: str, step: str, requests: int) -> float:
    """Green's share of `requests` invocations, all made while `step` was reported."""
    _wait_for_step(sm, endpoint, step)
    seen = _variants(rt, endpoint, requests)
    pending = _pending(sm, endpoint)
    assert pending is not None and step in pending["VariantStatus"][0]["StatusMessage"], (
        "the step ended before the measurement did; lengthen its WaitIntervalInSeconds"
    )
    return seen["Green"] / requests


def test_canary_shifts_its_share_bakes_and_completes(guarded: ServerProcess) -> None:
    sm, rt = guarded.client("sagemaker"), guarded.client("sagemaker-runtime")
    endpoint = deploy(sm, "s3://models/iris/model.tar.gz", variants=[("Blue", 1, 1.0)])
    green = _green_config(sm, endpoint, count=2)
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                "WaitIntervalInSeconds": 12,
            },
            "TerminationWaitInSeconds": 1,
        }
    }
    with Traffic(guarded.client("sagemaker-runtime"), endpoint, threads=2) as traffic:
        traffic.wait_for_answers(20)
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
        # One of two new instances is the canary: half of the requests.
        share = _share_during_step(sm, rt, endpoint, "Step 1 of 2", 200)
        assert 0.35 <= share <= 0.65, share
        done = wait_for_status(sm, endpoint, {"InService"})
        traffic.wait_for_answers(20)
    assert traffic.errors == [], error_codes(traffic.errors)
    assert done["EndpointConfigName"] == green
    assert "FailureReason" not in done
    assert done["LastDeploymentConfig"] == config
    assert [v["VariantName"] for v in done["ProductionVariants"]] == ["Green"]
    assert _variants(rt, endpoint, 20) == {"Green": 20}


def test_an_alarm_during_baking_rolls_back(guarded: ServerProcess) -> None:
    sm, rt = guarded.client("sagemaker"), guarded.client("sagemaker-runtime")
    cw = guarded.client("cloudwatch")
    endpoint = deploy(sm, "s3://models/iris/model.tar.gz", variants=[("Blue", 1, 1.0)])
    green = _green_config(sm, endpoint)
    alarm = _green_alarm(cw, endpoint)
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
                "WaitIntervalInSeconds": 120,
            },
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }
    with Traffic(guarded.client("sagemaker-runtime"), endpoint, threads=2) as traffic:
        traffic.wait_for_answers(20)
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
        _wait_for_step(sm, endpoint, "Step 1 of 2")
        rolled = wait_for_status(sm, endpoint, {"InService"}, timeout_s=60)
        traffic.wait_for_answers(20)
    assert traffic.errors == [], error_codes(traffic.errors)
    assert rolled["EndpointConfigName"] == endpoint
    assert alarm in rolled["FailureReason"]
    assert [v["VariantName"] for v in rolled["ProductionVariants"]] == ["Blue"]
    assert _variants(rt, endpoint, 20) == {"Blue": 20}


def test_linear_steps_as_configured(guarded: ServerProcess) -> None:
    sm, rt = guarded.client("sagemaker"), guarded.client("sagemaker-runtime")
    endpoint = deploy(sm, "s3://models/iris/model.tar.gz", variants=[("Blue", 1, 1.0)])
    green = _green_config(sm, endpoint)
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                "WaitIntervalInSeconds": 8,
            }
        }
    }
    with Traffic(guarded.client("sagemaker-runtime"), endpoint, threads=1) as traffic:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
        first = _share_during_step(sm, rt, endpoint, "Step 1 of 4", 120)
        second = _share_during_step(sm, rt, endpoint, "Step 2 of 4", 120)
        third = _wait_for_step(sm, endpoint, "Step 3 of 4")
        done = wait_for_status(sm, endpoint, {"InService"})
    assert traffic.errors == [], error_codes(traffic.errors)
    assert 0.1 <= first <= 0.42, first
    assert 0.33 <= second <= 0.67, second
    assert third["CurrentWeight"] == pytest.approx(0.75)
    assert done["EndpointConfigName"] == green


def test_rolling_update_replaces_instances_in_batches(guarded: ServerProcess) -> None:
    sm = guarded.client("sagemaker")
    endpoint = deploy(sm, "s3://models/iris/model.tar.gz", variants=[("Blue", 2, 1.0)])
    green = _green_config(sm, endpoint, count=2)
    config = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 3,
        }
    }
    seen: list[tuple[int, str]] = []
    with Traffic(guarded.client("sagemaker-runtime"), endpoint, threads=2) as traffic:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            described = sm.describe_endpoint(EndpointName=endpoint)
            if described["EndpointStatus"] != "Updating":
                break
            pending = described.get("PendingDeploymentSummary", {}).get("ProductionVariants")
            if pending:
                message = pending[0]["VariantStatus"][0]["StatusMessage"]
                if not seen or seen[-1][1] != message:
                    seen.append((pending[0]["CurrentInstanceCount"], message))
            time.sleep(0.1)
        traffic.wait_for_answers(20)
    assert traffic.errors == [], error_codes(traffic.errors)
    assert [count for count, _ in seen] == [1, 2], seen
    assert "1 old ones remain" in seen[0][1] and "0 old ones remain" in seen[1][1]
    done = sm.describe_endpoint(EndpointName=endpoint)
    assert done["EndpointStatus"] == "InService" and done["EndpointConfigName"] == green
    assert done["ProductionVariants"][0]["CurrentInstanceCount"] == 2


def test_an_alarm_during_a_rolling_update_brings_the_old_instances_back(
    guarded: ServerProcess,
) -> None:
    sm, rt = guarded.client("sagemaker"), guarded.client("sagemaker-runtime")
    endpoint = deploy(sm, "s3://models/iris/model.tar.gz", variants=[("Blue", 2, 1.0)])
    green = _green_config(sm, endpoint, count=2)
    alarm = _green_alarm(guarded.client("cloudwatch"), endpoint)
    config = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 120,
            "RollbackMaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }
    with Traffic(guarded.client("sagemaker-runtime"), endpoint, threads=2) as traffic:
        traffic.wait_for_answers(20)
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
        _wait_for_step(sm, endpoint, "1 old ones remain")
        rolled = wait_for_status(sm, endpoint, {"InService", "UpdateRollbackFailed"}, 90)
        traffic.wait_for_answers(20)
    assert traffic.errors == [], error_codes(traffic.errors)
    assert rolled["EndpointStatus"] == "InService", rolled.get("FailureReason")
    assert rolled["EndpointConfigName"] == endpoint
    assert alarm in rolled["FailureReason"]
    assert [
        (v["VariantName"], v["CurrentInstanceCount"]) for v in rolled["ProductionVariants"]
    ] == [("Blue", 2)]
    assert _variants(rt, endpoint, 20) == {"Blue": 20}


def test_a_rollback_that_cannot_restart_the_old_fleet_is_update_rollback_failed(
    guarded: ServerProcess, tmp_path: Path
) -> None:
    sm = guarded.client("sagemaker")
    marker = tmp_path / "model-store-down"
    url = put_breakable_model(guarded.data_dir, unique("breakable"), marker)
    endpoint = deploy(sm, url, image="modelhost/python", variants=[("Blue", 2, 1.0)])
    iris = f"{endpoint}-iris"
    sm.create_model(
        ModelName=iris,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": "s3://models/iris/model.tar.gz",
        },
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    green = _green_config(sm, endpoint, count=2, model=iris)
    alarm = _green_alarm(guarded.client("cloudwatch"), endpoint)
    config = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 120,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }
    marker.touch()  # the old model can no longer load: stopped instances cannot come back
    with Traffic(guarded.client("sagemaker-runtime"), endpoint, threads=2) as traffic:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config)
        failed = wait_for_status(sm, endpoint, {"InService", "UpdateRollbackFailed"}, 90)
        traffic.wait_for_answers(20)
    assert traffic.errors == [], error_codes(traffic.errors)
    assert failed["EndpointStatus"] == "UpdateRollbackFailed"
    assert "could not restart the old instances" in failed["FailureReason"]
    assert failed["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert failed["EndpointConfigName"] == endpoint and "PendingDeploymentSummary" not in failed
    # A new update is the way out.
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=green)
    done = wait_for_status(sm, endpoint, {"InService"})
    assert done["EndpointConfigName"] == green


def test_deployment_configs_it_cannot_follow_are_refused(guarded: ServerProcess) -> None:
    sm = guarded.client("sagemaker")
    endpoint = deploy(sm, "s3://models/iris/model.tar.gz", variants=[("Blue", 1, 1.0)])
    green = _green_config(sm, endpoint)
    both = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        },
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 0,
        },
    }
    no_size = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 0}
        }
    }
    no_alarm = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "nobody-made-it"}]}}
    for config, words in ((both, "not both"), (no_size, "CanarySize"), (no_alarm, "nobody")):
        with pytest.raises(ClientError) as refused:
            sm.update_endpoint(
                EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=config
            )
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert words in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as refused:
        sm.update_endpoint(
            EndpointName=endpoint,
            EndpointConfigName=green,
            ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
        )
    assert "RetainAllVariantProperties" in refused.value.response["Error"]["Message"]
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
