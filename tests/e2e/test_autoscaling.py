"""Autoscaling end to end: Application Auto Scaling through boto3 against a real server whose
controller evaluates every half second over a three-second metric window."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from tests.support.async_inference import (
    deploy_async,
    local_path,
    put_digest_model,
    wait_for_object,
)
from tests.support.autoscaling import (
    DIMENSION,
    FAST_AUTOSCALING,
    Load,
    counts,
    register,
    resource_id,
    schedule_range,
)
from tests.support.endpoints import deploy, unique
from tests.support.models import put_iris_model, put_model
from tests.support.processes import wait_until
from tests.support.server import ServerProcess, running_server

INVOCATIONS = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
# Notes every prediction it starts, so a test can tell a request that ran to the end on
# its instance from one cut off there and retried elsewhere.
_SLOW_MODEL = b"""
import json, os, time
def model_fn(model_dir):
    return None
def input_fn(body, content_type):
    return body
def predict_fn(data, model):
    with open(os.environ["STARTS_FILE"], "a") as starts:
        starts.write("started\\n")
    time.sleep(0.3)
    return {"slept": 0.3}
def output_fn(prediction, accept):
    return json.dumps(prediction)
"""


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("autoscaling") / "data", env=FAST_AUTOSCALING
    ) as process:
        put_iris_model(process.data_dir)
        put_model(process.data_dir, "slow", {"code/inference.py": _SLOW_MODEL})
        yield process


@pytest.fixture(scope="module")
def sm(fast_server: ServerProcess):
    return fast_server.client("sagemaker")


@pytest.fixture(scope="module")
def aas(fast_server: ServerProcess):
    return fast_server.client("application-autoscaling")


@pytest.fixture(scope="module")
def rt(fast_server: ServerProcess):
    return fast_server.client("sagemaker-runtime")


def _tracking(aas, name: str, config: dict, policy: str = "track") -> dict:
    return aas.put_scaling_policy(
        PolicyName=policy,
        ServiceNamespace="sagemaker",
        ResourceId=resource_id(name),
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=config,
    )


def test_target_tracking_scales_out_under_load_and_back_to_min(sm, aas, rt) -> None:
    name = deploy(sm, "s3://models/iris/model.tar.gz")
    register(aas, name, 1, 3)
    _tracking(
        aas,
        name,
        {
            "TargetValue": 120.0,
            "PredefinedMetricSpecification": INVOCATIONS,
            "ScaleOutCooldown": 1,
            "ScaleInCooldown": 1,
        },
    )
    load = Load(rt, name, clients=2, body="5.1,3.5,1.4,0.2", content_type="text/csv", pause_s=0.02)
    try:
        wait_until(lambda: counts(sm, name)[2] > 1, 90, "the desired count to rise")
        wait_until(lambda: counts(sm, name)[1] > 1, 90, "new instances to serve")
    finally:
        load.stop()
    assert load.failures == []
    assert load.answered > 0
    wait_until(lambda: counts(sm, name) == ("InService", 1, 1), 90, "a scale-in back to min")

    activities = aas.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=resource_id(name)
    )["ScalingActivities"]
    causes = [a["Cause"] for a in activities]
    assert any("InvocationsPerInstance" in c and "above its target 120" in c for c in causes)
    assert "below its target 120" in causes[0]  # newest first: the scale-in to 1
    assert activities[0]["Description"] == "Setting desired instance count to 1."
    wait_until(
        lambda: (
            aas.describe_scaling_activities(
                ServiceNamespace="sagemaker", ResourceId=resource_id(name)
            )["ScalingActivities"][0]["StatusCode"]
            == "Successful"
        ),
        90,
        "the scale-in activity to finish",
    )


def test_scale_in_drains_requests_in_flight(sm, aas, rt, tmp_path) -> None:
    """Concurrency per instance drives the count out; a scale-in while slow requests run on
    the instances being removed lets every one of them finish where it started."""
    starts = tmp_path / "starts"
    name = deploy(
        sm,
        "s3://models/slow/model.tar.gz",
        image="modelhost/python",
        environment={"STARTS_FILE": str(starts)},
    )
    register(aas, name, 1, 3)
    _tracking(
        aas,
        name,
        {
            "TargetValue": 1.5,
            "ScaleOutCooldown": 1,
            "ScaleInCooldown": 1,
            "CustomizedMetricSpecification": {
                "MetricName": "ConcurrentRequestsPerModel",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [
                    {"Name": "EndpointName", "Value": name},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
                "Statistic": "Average",
            },
        },
    )
    heavy = Load(rt, name, clients=6, body="{}", content_type="application/json")
    light = None
    try:
        wait_until(lambda: counts(sm, name)[1:] == (3, 3), 90, "a scale-out to the maximum")
        # One slow client keeps requests in flight everywhere the router sends them.
        light = Load(rt, name, clients=1, body="{}", content_type="application/json")
        heavy.stop()
        wait_until(lambda: counts(sm, name) == ("InService", 1, 1), 90, "a scale-in to 1")
    finally:
        heavy.stop()
        if light is not None:
            light.stop()
    assert heavy.failures == []
    assert light is not None and light.failures == [] and light.answered > 0
    # No prediction was cut off by a stopped instance (and retried on another one).
    assert len(starts.read_text().splitlines()) == heavy.answered + light.answered


def test_scales_in_to_zero_and_back(sm, aas, rt) -> None:
    name = deploy(sm, "s3://models/iris/model.tar.gz")
    register(aas, name, 0, 2)
    _tracking(
        aas,
        name,
        {"TargetValue": 60.0, "PredefinedMetricSpecification": INVOCATIONS, "ScaleInCooldown": 0},
    )
    wait_until(lambda: counts(sm, name) == ("InService", 0, 0), 90, "a scale-in to zero")
    with pytest.raises(ClientError) as excinfo:
        rt.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2")
    # Refused at once, saying why: no instance is coming, so none is waited for.
    assert excinfo.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert "scaled it to zero" in excinfo.value.response["Error"]["Message"]
    register(aas, name, 1, 2)
    wait_until(lambda: counts(sm, name) == ("InService", 1, 1), 90, "a scale-out from zero")
    answer = rt.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2")
    assert answer["Body"].read().strip() in (b"0", b"0.0")


def test_async_backlog_per_instance_drives_the_count(fast_server, sm, aas, rt) -> None:
    name = deploy_async(sm, put_digest_model(fast_server.data_dir), per_instance=1)
    register(aas, name, 1, 3)
    _tracking(
        aas,
        name,
        {
            "TargetValue": 2.0,
            "ScaleOutCooldown": 1,
            "ScaleInCooldown": 1,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": name}],
                "Statistic": "Average",
            },
        },
    )
    path = local_path(fast_server.data_dir, f"s3://inputs/{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps({"sleep": 0.4}).encode())
    answers = [
        rt.invoke_endpoint_async(
            EndpointName=name,
            ContentType="application/json",
            InputLocation=f"s3://inputs/{name}.json",
        )
        for _ in range(20)
    ]
    wait_until(lambda: counts(sm, name)[2] > 1, 90, "a scale-out on the backlog")
    for answer in answers:
        assert (
            wait_for_object(
                fast_server.data_dir, answer["OutputLocation"], answer["FailureLocation"]
            )
            == answer["OutputLocation"]
        )
    wait_until(lambda: counts(sm, name) == ("InService", 1, 1), 90, "a scale-in to 1")
    causes = [
        a["Cause"]
        for a in aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource_id(name)
        )["ScalingActivities"]
    ]
    assert any(
        "ApproximateBacklogSizePerInstance" in c and "above its target 2" in c for c in causes
    )


def test_scheduled_action_moves_the_range_and_the_count(sm, aas) -> None:
    name = deploy(sm, "s3://models/iris/model.tar.gz")
    register(aas, name, 1, 4)
    schedule_range(aas, name, 2, 4)
    wait_until(lambda: counts(sm, name) == ("InService", 2, 2), 90, "the scheduled scale-out")
    target = aas.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource_id(name)]
    )["ScalableTargets"][0]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 4)
    causes = [
        a["Cause"]
        for a in aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource_id(name)
        )["ScalingActivities"]
    ]
    assert "scheduled action name morning was triggered" in causes
    assert any(c.startswith("the minimum capacity 2 is above") for c in causes)


def test_describe_update_and_deregister(sm, aas) -> None:
    name = deploy(sm, "s3://models/iris/model.tar.gz")
    resource = resource_id(name)
    register(aas, name, 0, 2, Tags={"team": "ml"})  # scale-to-zero ranges are accepted
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        MaxCapacity=3,
    )
    target = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ][0]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    assert target["SuspendedState"]["DynamicScalingInSuspended"] is False
    arn = target["ScalableTargetARN"]
    aas.tag_resource(ResourceARN=arn, Tags={"stage": "prod"})
    aas.untag_resource(ResourceARN=arn, TagKeys=["team"])
    assert aas.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"stage": "prod"}
    with pytest.raises(aas.exceptions.ResourceNotFoundException):
        aas.list_tags_for_resource(ResourceARN=arn[:-4] + "beef")

    tracking = _tracking(
        aas,
        name,
        {
            "TargetValue": 70.0,
            "CustomizedMetricSpecification": {
                "MetricName": "CPUUtilization",
                "Namespace": "/aws/sagemaker/Endpoints",
                "Dimensions": [
                    {"Name": "EndpointName", "Value": name},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
                "Statistic": "Average",
                "Unit": "Percent",
            },
        },
        policy="cpu",
    )
    assert ":policyName/cpu" in tracking["PolicyARN"]
    aas.put_scaling_policy(
        PolicyName="steps",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "Cooldown": 60,
            "StepAdjustments": [
                {
                    "MetricIntervalLowerBound": 0,
                    "MetricIntervalUpperBound": 10,
                    "ScalingAdjustment": 1,
                },
                {"MetricIntervalLowerBound": 10, "ScalingAdjustment": 2},
            ],
        },
    )
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    assert [p["PolicyName"] for p in policies] == ["cpu", "steps"]
    assert policies[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70.0
    assert (
        policies[1]["StepScalingPolicyConfiguration"]["StepAdjustments"][1]["ScalingAdjustment"]
        == 2
    )

    aas.put_scheduled_action(
        ServiceNamespace="sagemaker",
        ScheduledActionName="weekdays",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        Schedule="cron(0 8 ? * MON-FRI *)",
        Timezone="Europe/Berlin",
        ScalableTargetAction={"MinCapacity": 1},
    )
    actions = aas.describe_scheduled_actions(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScheduledActions"
    ]
    assert [(a["ScheduledActionName"], a["Schedule"], a["Timezone"]) for a in actions] == [
        ("weekdays", "cron(0 8 ? * MON-FRI *)", "Europe/Berlin")
    ]
    paged = aas.get_paginator("describe_scaling_policies").paginate(
        ServiceNamespace="sagemaker", ResourceId=resource, PaginationConfig={"PageSize": 1}
    )
    assert [p["PolicyName"] for page in paged for p in page["ScalingPolicies"]] == ["cpu", "steps"]

    aas.delete_scaling_policy(
        PolicyName="cpu",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
    )
    with pytest.raises(aas.exceptions.ObjectNotFoundException):
        aas.delete_scaling_policy(
            PolicyName="cpu",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
        )
    aas.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION
    )
    assert (
        aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
            "ScalableTargets"
        ]
        == []
    )
    assert (
        aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
            "ScalingPolicies"
        ]
        == []
    )
    assert (
        aas.describe_scheduled_actions(ServiceNamespace="sagemaker", ResourceId=resource)[
            "ScheduledActions"
        ]
        == []
    )
    with pytest.raises(aas.exceptions.ObjectNotFoundException):
        aas.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION
        )
    with pytest.raises(aas.exceptions.ResourceNotFoundException):
        aas.list_tags_for_resource(ResourceARN=arn)


def _error(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(ClientError) as excinfo:
        call()
    error = excinfo.value.response["Error"]
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Code"], error["Message"]


def test_bad_input_is_a_validation_exception(sm, aas) -> None:
    name = deploy(sm, "s3://models/iris/model.tar.gz")
    resource = resource_id(name)

    def register(**changes):
        params = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": resource,
            "ScalableDimension": DIMENSION,
            "MinCapacity": 1,
            "MaxCapacity": 2,
        }
        return lambda: aas.register_scalable_target(**{**params, **changes})

    code, message = _error(register(MinCapacity=3, MaxCapacity=1))
    assert code == "ValidationException" and "cannot be greater than maximum" in message
    assert (
        _error(register(ResourceId=f"endpoint/{unique('missing')}/variant/AllTraffic"))[0]
        == "ValidationException"
    )
    assert _error(register(ResourceId=f"endpoint/{name}/variant/Nope"))[0] == (
        "ValidationException"
    )
    assert _error(register(ResourceId="table/orders"))[0] == "ValidationException"
    assert _error(register(ServiceNamespace="ecs"))[0] == "ValidationException"
    assert _error(register(ScalableDimension="ecs:service:DesiredCount"))[0] == (
        "ValidationException"
    )
    assert _error(register(MaxCapacity=1000))[0] == "ValidationException"
    assert _error(register(MinCapacity=-1))[0] == "ValidationException"

    unregistered = f"endpoint/{unique('none')}/variant/AllTraffic"
    code, _ = _error(
        lambda: aas.put_scaling_policy(
            PolicyName="p",
            ServiceNamespace="sagemaker",
            ResourceId=unregistered,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 1.0,
                "PredefinedMetricSpecification": INVOCATIONS,
            },
        )
    )
    assert code == "ObjectNotFoundException"

    register()()

    def policy(config: dict, policy_type: str = "TargetTrackingScaling"):
        key = f"{policy_type.removesuffix('Scaling')}ScalingPolicyConfiguration"
        return lambda: aas.put_scaling_policy(
            PolicyName="p",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            PolicyType=policy_type,
            **{key: config},
        )

    code, message = _error(
        policy(
            {
                "TargetValue": 1.0,
                "CustomizedMetricSpecification": {
                    "MetricName": "NoSuchMetric",
                    "Namespace": "AWS/SageMaker",
                    "Statistic": "Average",
                },
            }
        )
    )
    assert code == "ValidationException" and "Unknown metric 'NoSuchMetric'" in message
    assert "InvocationsPerInstance" in message  # says what it can track
    assert _error(
        policy(
            {
                "TargetValue": 1.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "ECSServiceAverageCPUUtilization"
                },
            }
        )
    )[0] == ("ValidationException")
    assert (
        _error(policy({"TargetValue": 0.0, "PredefinedMetricSpecification": INVOCATIONS}))[0]
        == "ValidationException"
    )
    assert _error(policy({"TargetValue": 1.0}))[0] == "ValidationException"
    assert (
        _error(
            policy(
                {
                    "TargetValue": 1.0,
                    "CustomizedMetricSpecification": {
                        "Metrics": [{"Id": "m1", "Expression": "m2 * 2"}]
                    },
                }
            )
        )[0]
        == "ValidationException"
    )
    assert _error(
        policy(
            {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [
                    {
                        "MetricIntervalLowerBound": 0,
                        "MetricIntervalUpperBound": 10,
                        "ScalingAdjustment": 1,
                    },
                    {"MetricIntervalLowerBound": 5, "ScalingAdjustment": 2},
                ],
            },
            "StepScaling",
        )
    )[0] == ("ValidationException")
    assert (
        _error(policy({"MetricSpecifications": [{"TargetValue": 1.0}]}, "PredictiveScaling"))[0]
        == "ValidationException"
    )

    def schedule(expression: str, **extra):
        return lambda: aas.put_scheduled_action(
            ServiceNamespace="sagemaker",
            ScheduledActionName="s",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            Schedule=expression,
            ScalableTargetAction={"MinCapacity": 1},
            **extra,
        )

    for bad in (
        "cron(0 8 * *)",
        "cron(99 8 ? * * *)",
        "rate(0 minutes)",
        "at(tomorrow)",
        "every day",
    ):
        assert _error(schedule(bad))[0] == "ValidationException", bad
    assert _error(schedule("rate(1 hour)", Timezone="Mars/Olympus"))[0] == ("ValidationException")
    assert (
        aas.describe_scheduled_actions(ServiceNamespace="sagemaker", ResourceId=resource)[
            "ScheduledActions"
        ]
        == []
    )


def test_targets_and_cooldowns_survive_a_restart(tmp_path) -> None:
    """Targets, policies and the controller's cooldown knowledge live in the state store:
    after a crash the restarted server still knows them and keeps scaling."""
    with running_server(tmp_path / "data", env=FAST_AUTOSCALING) as server:
        iris = put_iris_model(server.data_dir)
        sm, aas = server.client("sagemaker"), server.client("application-autoscaling")
        name = deploy(sm, iris)
        register(aas, name, 1, 3)
        _tracking(
            aas,
            name,
            {
                "TargetValue": 100.0,
                "ScaleInCooldown": 3600,
                "PredefinedMetricSpecification": INVOCATIONS,
            },
        )
        register(aas, name, 2, 3)
        wait_until(lambda: counts(sm, name) == ("InService", 2, 2), 90, "a scale-out to min")
        server.kill()
        server.start()
        wait_until(lambda: counts(sm, name) == ("InService", 2, 2), 90, "the endpoint back")
        policies = aas.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=resource_id(name)
        )["ScalingPolicies"]
        assert [p["PolicyName"] for p in policies] == ["track"]
        # No traffic wants a scale-in, but the last scaling is within the hour-long
        # scale-in cooldown remembered from before the crash.
        register(aas, name, 1, 3)
        time.sleep(6)  # a dozen evaluations, each of which would otherwise scale in
        assert counts(sm, name) == ("InService", 2, 2)
        register(aas, name, 3, 3)
        wait_until(lambda: counts(sm, name) == ("InService", 3, 3), 90, "a scale-out to 3")
