"""CloudWatch alarms end to end: boto3's cloudwatch client (RPC v2 CBOR) against a real
server whose autoscaling controller evaluates alarms every half second and runs the step
scaling policies they name."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.autoscaling import (
    DIMENSION,
    FAST_AUTOSCALING,
    Load,
    counts,
    register,
    resource_id,
)
from tests.support.aws import cloudwatch_held_to
from tests.support.endpoints import deploy, unique
from tests.support.models import put_iris_model
from tests.support.processes import wait_until
from tests.support.server import ServerProcess, running_server


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("alarms") / "data", env=FAST_AUTOSCALING
    ) as process:
        put_iris_model(process.data_dir)
        yield process


def _step_policy(aas, name: str, policy: str, step: dict, cooldown: int = 1) -> str:
    return aas.put_scaling_policy(
        PolicyName=policy,
        ServiceNamespace="sagemaker",
        ResourceId=resource_id(name),
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "Cooldown": cooldown,
            "MetricAggregationType": "Average",
            "StepAdjustments": [step],
        },
    )["PolicyARN"]


def _alarm(
    cw, name: str, endpoint: str, operator: str, threshold: float, actions: list[str], **extra
) -> None:
    cw.put_metric_alarm(
        **{
            "AlarmName": name,
            "Namespace": "AWS/SageMaker",
            "MetricName": "InvocationsPerInstance",
            "Dimensions": [
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
            "Statistic": "Average",
            "Period": 60,
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "Threshold": threshold,
            "ComparisonOperator": operator,
            "AlarmActions": actions,
            **extra,
        }
    )


def _state(cw, name: str) -> str:
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


def _error(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


def test_step_policies_scale_out_and_in_from_alarms(fast_server: ServerProcess) -> None:
    sm, aas = fast_server.client("sagemaker"), fast_server.client("application-autoscaling")
    cw, rt = fast_server.client("cloudwatch"), fast_server.client("sagemaker-runtime")
    name = deploy(sm, "s3://models/iris/model.tar.gz")
    register(aas, name, 1, 2)
    out = _step_policy(aas, name, "out", {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1})
    into = _step_policy(aas, name, "in", {"MetricIntervalUpperBound": 0, "ScalingAdjustment": -1})
    high, low = unique("high"), unique("low")
    sns = "arn:aws:sns:us-east-1:123456789012:ops"  # kept, not run
    _alarm(cw, high, name, "GreaterThanThreshold", 60, [out, sns], TreatMissingData="ignore")
    _alarm(cw, low, name, "LessThanThreshold", 10, [into])
    policies = aas.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource_id(name), PolicyNames=["out"]
    )["ScalingPolicies"]
    assert [a["AlarmName"] for a in policies[0]["Alarms"]] == [high]
    described = cw.describe_alarms(AlarmNamePrefix=high)["MetricAlarms"][0]
    assert described["StateValue"] == "INSUFFICIENT_DATA"
    assert described["AlarmActions"] == [out, sns]
    assert isinstance(described["StateUpdatedTimestamp"], datetime.datetime)

    load = Load(rt, name, clients=2, body="5.1,3.5,1.4,0.2", content_type="text/csv", pause_s=0.02)
    try:
        wait_until(lambda: _state(cw, high) == "ALARM", 90, "the high alarm")
        wait_until(lambda: counts(sm, name)[2] == 2, 90, "the desired count to rise")
        assert _state(cw, low) == "OK"
    finally:
        load.stop()
    assert load.failures == []
    reason = cw.describe_alarms(AlarmNames=[high])["MetricAlarms"][0]["StateReason"]
    assert "breached the threshold (60)" in reason

    wait_until(lambda: _state(cw, low) == "ALARM", 90, "the low alarm")
    wait_until(lambda: counts(sm, name) == ("InService", 1, 1), 90, "a scale-in to 1")
    causes = [
        a["Cause"]
        for a in aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource_id(name)
        )["ScalingActivities"]
    ]
    assert f"monitor alarm {low} in state ALARM triggered policy in" in causes[0]
    assert any(f"monitor alarm {high} in state ALARM triggered policy out" in c for c in causes)
    in_alarm = cw.describe_alarms(StateValue="ALARM")["MetricAlarms"]
    assert low in [a["AlarmName"] for a in in_alarm]

    for_metric = cw.describe_alarms_for_metric(
        Namespace="AWS/SageMaker",
        MetricName="InvocationsPerInstance",
        Dimensions=[
            {"Name": "EndpointName", "Value": name},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
    )["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in for_metric) == sorted([high, low])
    cw.delete_alarms(AlarmNames=[high, low])
    assert cw.describe_alarms(AlarmNames=[high, low])["MetricAlarms"] == []


def test_bad_input_is_a_cloudwatch_error(fast_server: ServerProcess) -> None:
    cw = fast_server.client("cloudwatch")
    name = unique("bad")
    assert _error(lambda: _alarm(cw, name, "e", "Sideways", 1, [])) == "ValidationError"
    assert (
        _error(lambda: _alarm(cw, name, "e", "GreaterThanThreshold", 1, [], DatapointsToAlarm=3))
        == "ValidationError"
    )
    assert (
        _error(lambda: _alarm(cw, name, "e", "GreaterThanUpperThreshold", 1, []))
        == "ValidationError"
    )  # anomaly detection bands
    assert (
        _error(
            lambda: cw.put_metric_alarm(
                AlarmName=name,
                Namespace="AWS/SageMaker",
                MetricName="Invocations",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanThreshold",
            )
        )
        == "ValidationError"
    )  # neither Statistic nor ExtendedStatistic
    # Without botocore's own checks, so the server sees the request that lacks fields.
    raw = boto3.client(
        "cloudwatch",
        endpoint_url=fast_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    assert _error(lambda: raw.put_metric_alarm(AlarmName=name)) == "ValidationError"
    assert _error(lambda: cw.delete_alarms(AlarmNames=[name])) == "ResourceNotFound"
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"] == []


@pytest.fixture(scope="module")
def cbor_cloudwatch(fast_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory):
    """A cloudwatch client held to the RPC v2 CBOR protocol (botocore 1.43 prefers JSON
    where the model offers both): the same model, with CBOR its only protocol."""
    return cloudwatch_held_to(
        fast_server.url, tmp_path_factory.mktemp("models"), "smithy-rpc-v2-cbor"
    )


def test_the_cbor_protocol_reaches_the_same_operations(cbor_cloudwatch) -> None:
    cw = cbor_cloudwatch
    assert cw.meta.service_model.protocol == "smithy-rpc-v2-cbor"
    name = unique("cbor")
    _alarm(cw, name, "e", "GreaterThanThreshold", 1.5, [])
    alarm = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert (alarm["Threshold"], alarm["StateValue"]) == (1.5, "INSUFFICIENT_DATA")
    assert isinstance(alarm["AlarmConfigurationUpdatedTimestamp"], datetime.datetime)
    assert _error(lambda: _alarm(cw, name, "e", "Sideways", 1, [])) == "ValidationError"
    cw.delete_alarms(AlarmNames=[name])
    assert _error(lambda: cw.delete_alarms(AlarmNames=[name])) == "ResourceNotFound"


def test_alarms_survive_a_restart(tmp_path) -> None:
    with running_server(tmp_path / "data", env=FAST_AUTOSCALING) as server:
        cw = server.client("cloudwatch")
        name = unique("kept")
        _alarm(cw, name, "nowhere", "GreaterThanThreshold", 5, [], TreatMissingData="breaching")
        wait_until(lambda: _state(cw, name) == "ALARM", 90, "missing data to count as breaching")
        server.kill()
        server.start()
        kept = server.client("cloudwatch").describe_alarms()["MetricAlarms"]
        assert [(a["AlarmName"], a["StateValue"], a["Threshold"]) for a in kept] == [
            (name, "ALARM", 5.0)
        ]
