"""Inference components: models packed onto a model-less variant's instances by their
compute requirements, each invoked by InferenceComponentName, their copy counts set at
runtime, scaled to zero and back out by a request, and by target tracking policies."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.support.autoscaling import FAST_AUTOSCALING, Load
from tests.support.cloudwatch import recent, variant
from tests.support.endpoints import deployed, unique, wait_for, wait_for_status
from tests.support.models import (
    iris_classifier,
    iris_rows,
    labelled_iris_bytes,
    put_gated_iris_model,
    put_model,
)
from tests.support.processes import alive, instance_pids, wait_until
from tests.support.server import ServerProcess, running_server
from tests.support.streaming import put_token_model
from tests.support.traffic import Traffic, error_codes

ROLE = "arn:aws:iam::000000000000:role/any"
COMPONENT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose autoscaling controller evaluates every half second over a three
    second window, and that flushes its metrics history every second."""
    with running_server(
        tmp_path_factory.mktemp("components") / "data",
        env={
            **FAST_AUTOSCALING,
            "MODELHOST_MODEL_TIMEOUT": "30",
            "MODELHOST_METRICS_FLUSH_INTERVAL": "1",
        },
    ) as process:
        yield process


def _models(server, sagemaker, count: int) -> list[str]:
    """Model i answers 100*i + the iris class."""
    names = []
    for index in range(count):
        name = unique(f"icm{index}")
        url = put_model(server.data_dir, name, {"model.joblib": labelled_iris_bytes(index)})
        sagemaker.create_model(
            ModelName=name,
            PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": url},
            ExecutionRoleArn=ROLE,
        )
        names.append(name)
    return names


def _endpoint(sagemaker, instances: int) -> str:
    """An endpoint whose one variant has instances and no model."""
    name = unique("icep")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": "ml.m5.large",  # 2 vCPU, 8 GiB
                "InitialInstanceCount": instances,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    assert wait_for_status(sagemaker, name, {"InService", "Failed"})["EndpointStatus"] == (
        "InService"
    )
    return name


def _component(sagemaker, endpoint: str, model: str, cores: float, copies: int) -> str:
    name = unique("ic")
    sagemaker.create_inference_component(
        InferenceComponentName=name,
        EndpointName=endpoint,
        VariantName="AllTraffic",
        Specification={
            "ModelName": model,
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": cores,
                "MinMemoryRequiredInMb": 512,
            },
        },
        RuntimeConfig={"CopyCount": copies},
    )
    return name


def _describe(sagemaker, name: str) -> dict:
    return sagemaker.describe_inference_component(InferenceComponentName=name)


def _in_service(sagemaker, name: str) -> dict:
    return wait_for(
        lambda: _describe(sagemaker, name),
        "InferenceComponentStatus",
        {"InService", "Failed"},
        f"inference component {name}",
    )


def _predict(runtime, endpoint: str, component: str) -> list[int]:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        InferenceComponentName=component,
        ContentType="application/json",
        Body=json.dumps(iris_rows(3)),
    )
    return json.loads(answer["Body"].read())


def _unreadable(runtime, endpoint: str, component: str) -> str:
    """The error code of an invocation whose body the model cannot read."""
    code, _ = _error(
        lambda: runtime.invoke_endpoint(
            EndpointName=endpoint,
            InferenceComponentName=component,
            ContentType="application/json",
            Body=b"not json",
        )
    )
    return code


def _error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_components_share_instances_by_their_requirements(server, sagemaker, runtime) -> None:
    models = _models(server, sagemaker, 4)
    endpoint = _endpoint(sagemaker, 2)
    # Two copies of 1 core fill one instance; 0.5 + 1 core go on the other.
    first = _component(sagemaker, endpoint, models[1], 1.0, 2)
    second = _component(sagemaker, endpoint, models[2], 0.5, 1)
    third = _component(sagemaker, endpoint, models[3], 1.0, 1)
    for name, copies in ((first, 2), (second, 1), (third, 1)):
        described = _in_service(sagemaker, name)
        assert described["InferenceComponentStatus"] == "InService", described
        assert described["RuntimeConfig"]["CurrentCopyCount"] == copies
        assert described["RuntimeConfig"]["DesiredCopyCount"] == copies
        assert described["EndpointName"] == endpoint
    listed = sagemaker.list_inference_components(EndpointNameEquals=endpoint)
    assert {c["InferenceComponentName"] for c in listed["InferenceComponents"]} == {
        first,
        second,
        third,
    }

    # Each answers with its own model's labels (model i: 100*i + class).
    for index, name in ((1, first), (2, second), (3, third)):
        for _ in range(3):
            predictions = _predict(runtime, endpoint, name)
            assert len(predictions) == 3
            assert all(100 * index <= p < 100 * index + 3 for p in predictions), predictions

    code, message = _error(lambda: _predict(runtime, endpoint, "no-such-component"))
    assert code == "ValidationError" and "no-such-component" in message
    code, message = _error(
        lambda: runtime.invoke_endpoint(
            EndpointName=endpoint, ContentType="application/json", Body=b"[[1, 2, 3, 4]]"
        )
    )
    assert code == "ValidationError" and "InferenceComponentName" in message

    # The second instance has 0.5 cores left: one more 0.5-core copy fits.
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=second, DesiredRuntimeConfig={"CopyCount": 2}
    )
    described = _in_service(sagemaker, second)
    assert described["RuntimeConfig"]["CurrentCopyCount"] == 2
    assert described["RuntimeConfig"]["DesiredCopyCount"] == 2

    # Both instances are full: a 1-core copy stays pending, saying why.
    fourth = _component(sagemaker, endpoint, models[0], 1.0, 1)
    deadline = time.monotonic() + 30
    while "FailureReason" not in (described := _describe(sagemaker, fourth)):
        assert time.monotonic() < deadline, described
        time.sleep(0.2)
    assert described["InferenceComponentStatus"] == "Creating"
    assert described["RuntimeConfig"]["CurrentCopyCount"] == 0
    assert "pending" in described["FailureReason"]
    assert "1 CPU cores" in described["FailureReason"]

    # The first one scaled to zero frees an instance: the pending copy is placed.
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=first, DesiredRuntimeConfig={"CopyCount": 0}
    )
    described = _in_service(sagemaker, fourth)
    assert described["InferenceComponentStatus"] == "InService", described
    assert "FailureReason" not in described
    assert all(0 <= p < 3 for p in _predict(runtime, endpoint, fourth))
    assert _in_service(sagemaker, first)["RuntimeConfig"]["CurrentCopyCount"] == 0
    # At zero copies and nothing to scale it out, a request is refused.
    code, message = _error(lambda: _predict(runtime, endpoint, first))
    assert code == "ValidationError" and "no copies" in message

    # With a scalable target from 0, the first request scales it out and is answered.
    autoscaling = server.client("application-autoscaling")
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"inference-component/{first}",
        ScalableDimension="sagemaker:inference-component:DesiredCopyCount",
        MinCapacity=0,
        MaxCapacity=1,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            predictions = _predict(runtime, endpoint, first)
            break
        except ClientError as error:  # retriable while the copy starts
            assert error.response["Error"]["Code"] == "ServiceUnavailable", error.response
            assert time.monotonic() < deadline
    assert all(100 <= p < 103 for p in predictions)
    described = _in_service(sagemaker, first)
    assert described["RuntimeConfig"]["DesiredCopyCount"] == 1
    assert described["RuntimeConfig"]["CurrentCopyCount"] == 1

    sagemaker.delete_inference_component(InferenceComponentName=third)
    deadline = time.monotonic() + 60
    while True:
        try:
            _describe(sagemaker, third)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ValidationException"
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    code, _ = _error(lambda: _predict(runtime, endpoint, third))
    assert code == "ValidationError"


def test_fields_modelhost_does_not_implement_are_refused(server, sagemaker) -> None:
    [model] = _models(server, sagemaker, 1)
    endpoint = _endpoint(sagemaker, 1)
    base = {
        "ModelName": model,
        "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256},
    }
    for extra, named in (
        ({"Specification": {**base, "DataCacheConfig": {"EnableCaching": True}}}, "DataCache"),
        (
            {"Specification": {**base, "BaseInferenceComponentName": "other"}},
            "BaseInferenceComponentName",
        ),
        ({"Specification": base, "Specifications": [base]}, "Specifications"),
    ):
        code, message = _error(
            lambda extra=extra: sagemaker.create_inference_component(
                InferenceComponentName=unique("ic"),
                EndpointName=endpoint,
                RuntimeConfig={"CopyCount": 1},
                **extra,
            )
        )
        assert code == "ValidationException" and named in message, message
    # A copy larger than a whole instance can never be placed.
    code, message = _error(
        lambda: sagemaker.create_inference_component(
            InferenceComponentName=unique("ic"),
            EndpointName=endpoint,
            Specification={
                "ModelName": model,
                "ComputeResourceRequirements": {
                    "NumberOfCpuCoresRequired": 4,
                    "MinMemoryRequiredInMb": 256,
                },
            },
            RuntimeConfig={"CopyCount": 1},
        )
    )
    assert code == "ValidationException" and "ml.m5.large" in message
    # ManagedInstanceScaling: its ScaleInPolicy is refused by name rather than stored and
    # ignored; so are bounds that exclude the initial count, and a variant with a model.
    for managed, extra, named in (
        (
            {
                "Status": "ENABLED",
                "MaxInstanceCount": 2,
                "ScaleInPolicy": {"Strategy": "CONSOLIDATION"},
            },
            {},
            "ScaleInPolicy",
        ),
        ({"Status": "ENABLED", "MinInstanceCount": 2, "MaxInstanceCount": 3}, {}, "Min"),
        ({"Status": "ENABLED", "MaxInstanceCount": 2}, {"ModelName": model}, "ModelName"),
    ):
        code, message = _error(
            lambda managed=managed, extra=extra: sagemaker.create_endpoint_config(
                EndpointConfigName=unique("iccfg"),
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                        "ManagedInstanceScaling": managed,
                        **extra,
                    }
                ],
            )
        )
        assert code == "ValidationException" and named in message, message
    # A variant with a model cannot host components.
    name = unique("icm")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    code, message = _error(
        lambda: sagemaker.create_inference_component(
            InferenceComponentName=unique("ic"),
            EndpointName=name,
            Specification=base,
            RuntimeConfig={"CopyCount": 1},
        )
    )
    assert code == "ValidationException" and "ModelName" in message


def test_managed_instance_scaling_adds_instances_for_copies_and_removes_empty_ones(
    server, sagemaker, runtime
) -> None:
    """A copy that fits on no instance adds one, up to MaxInstanceCount; beyond it copies
    wait with a reason; an instance left without copies goes, down to MinInstanceCount."""
    [model] = _models(server, sagemaker, 1)
    endpoint = unique("icmis")
    managed = {"Status": "ENABLED", "MinInstanceCount": 1, "MaxInstanceCount": 2}
    sagemaker.create_endpoint_config(
        EndpointConfigName=endpoint,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": "ml.m5.large",  # 2 vCPU: one copy of 2 cores each
                "InitialInstanceCount": 1,
                "ManagedInstanceScaling": managed,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
    deployed.append((sagemaker, endpoint))
    wait_for_status(sagemaker, endpoint, {"InService", "Failed"})

    def instances() -> tuple[int, int]:
        (variant,) = sagemaker.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]
        assert variant["ManagedInstanceScaling"] == managed
        return variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]

    assert instances() == (1, 1)
    component = _component(sagemaker, endpoint, model, 2.0, 1)
    assert _in_service(sagemaker, component)["RuntimeConfig"]["CurrentCopyCount"] == 1
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=component, DesiredRuntimeConfig={"CopyCount": 2}
    )
    wait_until(lambda: _copies(sagemaker, component) == ("InService", 2, 2), what="2 copies")
    assert instances() == (2, 2)
    expected = iris_classifier().predict(iris_rows(3)).tolist()
    assert _predict(runtime, endpoint, component) == expected
    # A third copy would need a third instance: it waits, saying why.
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=component, DesiredRuntimeConfig={"CopyCount": 3}
    )
    wait_until(
        lambda: (
            "ManagedInstanceScaling maximum"
            in _describe(sagemaker, component).get("FailureReason", "")
        ),
        what="the pending copy's reason",
    )
    assert instances() == (2, 2)
    # Back to one copy: the emptied instance goes.
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName=component, DesiredRuntimeConfig={"CopyCount": 1}
    )
    wait_until(lambda: instances() == (1, 1), what="the empty instance removed")
    wait_until(lambda: _copies(sagemaker, component) == ("InService", 1, 1), what="1 copy")
    assert _predict(runtime, endpoint, component) == expected


def _copies(sagemaker, name: str) -> tuple[str, int, int]:
    runtime = (described := _describe(sagemaker, name))["RuntimeConfig"]
    return (
        described["InferenceComponentStatus"],
        runtime["CurrentCopyCount"],
        runtime["DesiredCopyCount"],
    )


@pytest.mark.parametrize(
    ("metric", "target", "clients", "named"),
    [
        ("SageMakerInferenceComponentInvocationsPerCopy", 30.0, 1, "InvocationsPerCopy"),
        (
            "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution",
            0.1,
            3,
            "ConcurrentRequestsPerCopy",
        ),
    ],
)
def test_target_tracking_follows_load_and_scales_to_zero(
    fast_server, metric: str, target: float, clients: int, named: str
) -> None:
    sagemaker = fast_server.client("sagemaker")
    runtime = fast_server.client("sagemaker-runtime")
    autoscaling = fast_server.client("application-autoscaling")
    [model] = _models(fast_server, sagemaker, 1)
    endpoint = _endpoint(sagemaker, 1)
    # Two 1-core copies fill the one ml.m5.large: of the four allowed, two stay pending.
    name = _component(sagemaker, endpoint, model, 1.0, 1)
    assert _in_service(sagemaker, name)["InferenceComponentStatus"] == "InService"
    resource = f"inference-component/{name}"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=COMPONENT_DIMENSION,
        MinCapacity=0,
        MaxCapacity=4,
    )
    autoscaling.put_scaling_policy(
        PolicyName="per-copy",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=COMPONENT_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": target,
            "PredefinedMetricSpecification": {"PredefinedMetricType": metric},
            "ScaleOutCooldown": 1,
            "ScaleInCooldown": 1,
        },
    )

    load = Load(
        runtime,
        endpoint,
        clients=clients,
        body=json.dumps(iris_rows(2)),
        content_type="application/json",
        pause_s=0.02,
        extra={"InferenceComponentName": name},
    )
    try:
        wait_until(lambda: _copies(sagemaker, name)[2] > 2, 120, "the copy count to pass 2")
        wait_until(lambda: _copies(sagemaker, name)[1] == 2, 120, "a second copy to serve")
        wait_until(
            lambda: "pending" in _describe(sagemaker, name).get("FailureReason", ""),
            60,
            "the copies with no room to be pending",
        )
    finally:
        load.stop()
    assert load.failures == []
    assert load.answered > 0

    # No traffic: down to the minimum, no copy at all, though two copies never fit.
    wait_until(lambda: _copies(sagemaker, name) == ("InService", 0, 0), 120, "a scale-in to 0")
    activities = autoscaling.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=resource
    )["ScalingActivities"]
    assert all(a["ScalableDimension"] == COMPONENT_DIMENSION for a in activities)
    causes = [a["Cause"] for a in activities]
    assert any(named in c and f"above its target {target:g}" in c for c in causes), causes
    assert f"below its target {target:g}" in causes[0]  # newest first: the scale-in to 0
    assert activities[0]["Description"] == "Setting desired copy count to 0."
    wait_until(
        lambda: (
            autoscaling.describe_scaling_activities(
                ServiceNamespace="sagemaker", ResourceId=resource
            )["ScalingActivities"][0]["StatusCode"]
            == "Successful"
        ),
        60,
        "the scale-in activity to finish",
    )

    # The next request brings a copy back and is answered.
    deadline = time.monotonic() + 60
    while True:
        try:
            predictions = _predict(runtime, endpoint, name)
            break
        except ClientError as error:  # retriable while the copy starts
            assert error.response["Error"]["Code"] == "ServiceUnavailable", error.response
            assert time.monotonic() < deadline
    assert len(predictions) == 3
    assert _in_service(sagemaker, name)["RuntimeConfig"]["CurrentCopyCount"] >= 1


def test_scaling_policies_a_component_cannot_have_are_refused(fast_server) -> None:
    sagemaker = fast_server.client("sagemaker")
    autoscaling = fast_server.client("application-autoscaling")
    [model] = _models(fast_server, sagemaker, 1)
    endpoint = _endpoint(sagemaker, 1)
    name = _component(sagemaker, endpoint, model, 0.5, 1)
    resource = f"inference-component/{name}"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=COMPONENT_DIMENSION,
        MinCapacity=1,
        MaxCapacity=2,
    )
    common = {
        "PolicyName": "p",
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource,
        "ScalableDimension": COMPONENT_DIMENSION,
    }
    code, message = _error(
        lambda: autoscaling.put_scaling_policy(
            **common,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 10.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
            },
        )
    )
    assert code == "ValidationException"
    assert "SageMakerInferenceComponentInvocationsPerCopy" in message, message
    code, message = _error(
        lambda: autoscaling.put_scaling_policy(
            **common,
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        )
    )
    assert code == "ValidationException" and "StepScaling" in message, message
    # A variant's target cannot track a component's per-copy metric.
    variant = _endpoint(sagemaker, 1)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=f"endpoint/{variant}/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    code, message = _error(
        lambda: autoscaling.put_scaling_policy(
            PolicyName="p",
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{variant}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 10.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
                },
            },
        )
    )
    assert code == "ValidationException" and "SageMakerVariant" in message, message


def test_component_metrics_are_recorded_by_component_name(fast_server) -> None:
    sagemaker = fast_server.client("sagemaker")
    runtime = fast_server.client("sagemaker-runtime")
    cloudwatch = fast_server.client("cloudwatch")
    [model] = _models(fast_server, sagemaker, 1)
    endpoint = _endpoint(sagemaker, 1)
    name = _component(sagemaker, endpoint, model, 0.5, 1)
    assert _in_service(sagemaker, name)["InferenceComponentStatus"] == "InService"
    calls = 7
    for _ in range(calls):
        assert len(_predict(runtime, endpoint, name)) == 3
    # One the model cannot read: a ModelError (424), an invocation with no latency.
    assert _unreadable(runtime, endpoint, name) == "ModelError"

    def total(metric: str, statistic: str = "Sum") -> float:
        by_name = {"InferenceComponentName": name}
        points = recent(cloudwatch, "AWS/SageMaker", metric, by_name, 60, [statistic])
        return sum(p[statistic] for p in points)

    # One copy served them all: as many invocations per copy as invocations.
    wait_until(lambda: total("Invocations") == calls + 1, 30, "the invocations to be recorded")
    wait_until(lambda: total("InvocationsPerCopy") == calls + 1, 30, "the per-copy invocations")
    wait_until(lambda: total("Invocation4XXErrors") == 1, 30, "the component's 4XX error")
    assert total("Invocation5XXErrors") == 0
    # One latency per answer, by component.
    for latency in ("ModelLatency", "OverheadLatency"):
        wait_until(
            lambda latency=latency: total(latency, "SampleCount") == calls,
            30,
            f"the component's {latency}",
        )
    listed = cloudwatch.list_metrics(
        Namespace="AWS/SageMaker",
        Dimensions=[{"Name": "InferenceComponentName", "Value": name}],
    )["Metrics"]
    assert {
        "Invocations",
        "InvocationsPerCopy",
        "ConcurrentRequestsPerCopy",
        "ModelLatency",
        "OverheadLatency",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
    } <= {m["MetricName"] for m in listed}


def test_response_stream_from_a_component(fast_server) -> None:
    sagemaker = fast_server.client("sagemaker")
    runtime = fast_server.client("sagemaker-runtime")
    model = unique("ictok")
    sagemaker.create_model(
        ModelName=model,
        PrimaryContainer={
            "Image": "modelhost/python",
            "ModelDataUrl": put_token_model(fast_server.data_dir),
        },
        ExecutionRoleArn=ROLE,
    )
    endpoint = _endpoint(sagemaker, 1)
    name = _component(sagemaker, endpoint, model, 0.5, 1)
    assert _in_service(sagemaker, name)["InferenceComponentStatus"] == "InService"
    tokens = ["Once", " upon", " a", " time"]
    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName=endpoint,
        InferenceComponentName=name,
        ContentType="application/json",
        Body=json.dumps({"tokens": tokens}),
    )
    assert [e["PayloadPart"]["Bytes"].decode() for e in response["Body"]] == tokens
    code, message = _error(
        lambda: runtime.invoke_endpoint_with_response_stream(
            EndpointName=endpoint,
            InferenceComponentName="no-such-component",
            ContentType="application/json",
            Body=b"{}",
        )
    )
    assert code == "ValidationError" and "no-such-component" in message


def _copy_traffic(runtime, endpoint: str, component: str) -> Traffic:
    return Traffic(
        runtime,
        endpoint,
        body=json.dumps(iris_rows(2)).encode(),
        content_type="application/json",
        extra={"InferenceComponentName": component},
    )


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_lost_copy_is_replaced_without_failing_requests(server, sagemaker, runtime, how) -> None:
    """A copy whose process dies (SIGKILL), or that hangs with its socket open (SIGSTOP:
    connections open, nothing answers), leaves its component's pool and a new copy takes
    its place, as a variant's instance would. No request fails: the ones the lost copy
    held never got an answer, so the router sends them to the other copy (a dead copy's
    connections fail at once; a stopped one is condemned by its missed pings, at the
    session server's 1 s ping interval and timeout, well before its 5 s model timeout,
    and killed)."""
    [model] = _models(server, sagemaker, 1)
    endpoint = _endpoint(sagemaker, 1)
    name = _component(sagemaker, endpoint, model, 0.5, 2)
    assert _in_service(sagemaker, name)["RuntimeConfig"]["CurrentCopyCount"] == 2
    pids = instance_pids(server.process.pid, endpoint)
    assert len(pids) == 2
    lost = pids[0]
    with _copy_traffic(runtime, endpoint, name) as traffic:
        traffic.wait_for_answers(20)
        os.kill(lost, getattr(signal, how))
        try:
            wait_until(lambda: not alive(lost), timeout_s=30, what="the lost copy to be gone")
            wait_until(
                lambda: len(instance_pids(server.process.pid, endpoint)) == 2,
                timeout_s=60,
                what="a new copy",
            )
        finally:
            if alive(lost):
                os.kill(lost, signal.SIGCONT)
        wait_until(lambda: _copies(sagemaker, name) == ("InService", 2, 2), what="2 copies serving")
        traffic.wait_for_answers(50)
    assert error_codes(traffic.errors) == []
    assert pids[1] in instance_pids(server.process.pid, endpoint)
    assert lost not in instance_pids(server.process.pid, endpoint)
    # Counted as a replacement, as an instance's is.
    counted = (
        f'modelhost_instance_replacements_total{{endpoint="{endpoint}",variant="AllTraffic"}} '
    )
    assert f"{counted}1.0" in server.metrics_text()


def _labels(bodies: list[bytes]) -> list[str]:
    """Which model gave each answer: "old" (model 0: classes 0-2) or "new" (model 1:
    100-102)."""
    found = []
    for body in bodies:
        predictions = json.loads(body)
        if all(0 <= p < 3 for p in predictions):
            found.append("old")
        elif all(100 <= p < 103 for p in predictions):
            found.append("new")
        else:
            raise AssertionError(f"an answer from neither model: {predictions}")
    return found


ROLLING = {
    "RollingUpdatePolicy": {
        "MaximumBatchSize": {"Type": "COPY_COUNT", "Value": 1},
        "WaitIntervalInSeconds": 1,
    }
}


@pytest.mark.parametrize(
    ("instances", "cores", "deployment"),
    [(1, 1.0, None), (2, 0.5, ROLLING)],
    ids=["no-spare-room", "rolling-policy"],
)
def test_new_specification_rolls_out_new_copies_first(
    server, sagemaker, runtime, tmp_path, instances, cores, deployment
) -> None:
    """UpdateInferenceComponent to a new model under steady traffic: the old copies keep
    answering until copies of the new one are ready, so no request fails and answers
    switch from the old model's labels to the new one's. The new model loads only once a
    gate file exists, which holds the update in the middle for as long as the test
    needs. With no spare room (two 1-core copies fill the one ml.m5.large) an old copy
    gives up its room for one new copy while the other serves; with room and a
    RollingUpdatePolicy of one copy per batch, both old copies serve until the first new
    one is ready."""
    [old] = _models(server, sagemaker, 1)
    gate = tmp_path / "gate"
    new = unique("icnew")
    url = put_gated_iris_model(server.data_dir, new, 1, gate)
    sagemaker.create_model(
        ModelName=new,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": url},
        ExecutionRoleArn=ROLE,
    )
    endpoint = _endpoint(sagemaker, instances)
    name = _component(sagemaker, endpoint, old, cores, 2)
    assert _in_service(sagemaker, name)["RuntimeConfig"]["CurrentCopyCount"] == 2
    with _copy_traffic(runtime, endpoint, name) as traffic:
        traffic.wait_for_answers(10)
        sagemaker.update_inference_component(
            InferenceComponentName=name,
            Specification={
                "ModelName": new,
                "ComputeResourceRequirements": {
                    "NumberOfCpuCoresRequired": cores,
                    "MinMemoryRequiredInMb": 512,
                },
            },
            **({} if deployment is None else {"DeploymentConfig": deployment}),
        )
        # While no copy of the new model can load, the old ones answer every request.
        traffic.wait_for_answers(30)
        assert _copies(sagemaker, name)[0] == "Updating"
        gated = traffic.answered
        gate.touch()
        wait_until(
            lambda: _copies(sagemaker, name) == ("InService", 2, 2),
            timeout_s=120,
            what="the new model's copies in service",
        )
        traffic.wait_for_answers(30)
    assert error_codes(traffic.errors) == []
    labels = _labels(traffic.bodies)
    assert set(labels[:gated]) == {"old"}
    assert labels[-10:] == ["new"] * 10
    described = _describe(sagemaker, name)
    assert described["Specification"]["ModelName"] == new
    assert "FailureReason" not in described
    assert len(instance_pids(server.process.pid, endpoint)) == 2
    if deployment is not None:
        assert described["LastDeploymentConfig"] == deployment
    # A new model's labels from every copy.
    assert all(100 <= p < 103 for _ in range(4) for p in _predict(runtime, endpoint, name))


def test_specification_that_cannot_start_rolls_back_to_the_old_copies(
    server, sagemaker, runtime
) -> None:
    """A new specification whose copies cannot start (its model's artifacts are missing)
    is rolled back, as SageMaker does: the old model's copies never stop answering (the
    one that gave up its room on the full instance comes back), and the component is
    InService on its old Specification with a FailureReason that says why."""
    [old] = _models(server, sagemaker, 1)
    broken = unique("icbroken")
    sagemaker.create_model(
        ModelName=broken,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": "s3://models/nowhere/model.tar.gz",
        },
        ExecutionRoleArn=ROLE,
    )
    endpoint = _endpoint(sagemaker, 1)
    name = _component(sagemaker, endpoint, old, 1.0, 2)
    assert _in_service(sagemaker, name)["RuntimeConfig"]["CurrentCopyCount"] == 2
    specification = _describe(sagemaker, name)["Specification"]
    with _copy_traffic(runtime, endpoint, name) as traffic:
        traffic.wait_for_answers(10)
        sagemaker.update_inference_component(
            InferenceComponentName=name,
            Specification={**specification, "ModelName": broken},
        )
        wait_until(
            lambda: (
                "FailureReason" in _describe(sagemaker, name)
                and _copies(sagemaker, name) == ("InService", 2, 2)
            ),
            timeout_s=120,
            what="the update rolled back",
        )
        traffic.wait_for_answers(30)
    assert error_codes(traffic.errors) == []
    assert set(_labels(traffic.bodies)) == {"old"}
    described = _describe(sagemaker, name)
    assert described["Specification"] == specification
    assert described["FailureReason"].startswith("Update rolled back:"), described
    assert "s3://models/nowhere/model.tar.gz" in described["FailureReason"]
    assert len(instance_pids(server.process.pid, endpoint)) == 2
    # DeploymentConfig rolls out a Specification; alone it would be stored and ignored.
    code, message = _error(
        lambda: sagemaker.update_inference_component(
            InferenceComponentName=name, RuntimeConfig={"CopyCount": 1}, DeploymentConfig=ROLLING
        )
    )
    assert code == "ValidationException" and "DeploymentConfig" in message


def test_an_alarm_during_an_update_rolls_it_back(fast_server, tmp_path) -> None:
    """An alarm of the update's AutoRollbackConfiguration that goes into ALARM while the
    update runs rolls it back: here one on the component's 4XX errors, set off by a
    request the model cannot read while the new model's copy cannot load yet."""
    server = fast_server
    sagemaker = server.client("sagemaker")
    runtime = server.client("sagemaker-runtime")
    cloudwatch = server.client("cloudwatch")
    [old] = _models(server, sagemaker, 1)
    new = unique("icnew")
    url = put_gated_iris_model(server.data_dir, new, 1, tmp_path / "gate")
    sagemaker.create_model(
        ModelName=new,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": url},
        ExecutionRoleArn=ROLE,
    )
    endpoint = _endpoint(sagemaker, 1)
    name = _component(sagemaker, endpoint, old, 0.5, 2)
    assert _in_service(sagemaker, name)["InferenceComponentStatus"] == "InService"
    specification = _describe(sagemaker, name)["Specification"]
    alarm = f"{name}-4xx"
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocation4XXErrors",
        Dimensions=[{"Name": "InferenceComponentName", "Value": name}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    deployment = {**ROLLING, "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]}}
    sagemaker.update_inference_component(
        InferenceComponentName=name,
        Specification={**specification, "ModelName": new},
        DeploymentConfig=deployment,
    )
    assert _describe(sagemaker, name)["LastDeploymentConfig"] == deployment
    assert _unreadable(runtime, endpoint, name) == "ModelError"
    wait_until(
        lambda: (
            alarm in _describe(sagemaker, name).get("FailureReason", "")
            and _copies(sagemaker, name) == ("InService", 2, 2)
        ),
        timeout_s=120,
        what="the update rolled back by the alarm",
    )
    described = _describe(sagemaker, name)
    assert described["Specification"] == specification
    assert described["FailureReason"].startswith("Update rolled back:"), described
    assert all(0 <= p < 3 for _ in range(4) for p in _predict(runtime, endpoint, name))
    assert len(instance_pids(server.process.pid, endpoint)) == 2


def test_instances_that_host_components_are_metered_not_their_copies(fast_server) -> None:
    """SageMaker bills a component-hosting variant's instances, whatever copies run on
    them: the meter runs for the variant at its instance type's full price (an ml.m5.large
    at 0.115 USD an hour), not at a copy's share of it; the variant's instance count, CPU
    and memory are its instances', what its copies use on them."""
    server = fast_server
    sagemaker = server.client("sagemaker")
    runtime = server.client("sagemaker-runtime")
    cloudwatch = server.client("cloudwatch")
    [model] = _models(server, sagemaker, 1)
    endpoint = _endpoint(sagemaker, 2)
    name = _component(sagemaker, endpoint, model, 0.5, 1)
    assert _in_service(sagemaker, name)["InferenceComponentStatus"] == "InService"
    assert len(_predict(runtime, endpoint, name)) == 3
    labels = f'endpoint="{endpoint}",instance_type="ml.m5.large",variant="AllTraffic"'

    def metered() -> tuple[float, float]:
        text = server.metrics_text()
        found = [
            re.search(rf"modelhost_instance_{what}_total\{{{labels}\}} ([0-9.e+-]+)", text)
            for what in ("seconds", "cost_usd")
        ]
        seconds, cost = (float(m.group(1)) if m else 0.0 for m in found)
        return seconds, cost

    wait_until(lambda: metered()[0] > 0, 30, "the variant's instances to be metered")
    seconds, cost = metered()
    assert cost == pytest.approx(seconds * 0.115 / 3600)
    # The endpoint's one metered series is its variant's instances'.
    series = [
        line
        for line in server.metrics_text().splitlines()
        if line.startswith("modelhost_instance_seconds_total") and f'"{endpoint}"' in line
    ]
    assert len(series) == 1, series
    gauge = f'modelhost_instances{{endpoint="{endpoint}",variant="AllTraffic"}} 2.0'
    assert gauge in server.metrics_text()

    def recorded(namespace: str, metric: str) -> list[dict]:
        return recent(cloudwatch, namespace, metric, variant(endpoint), 60, ["Maximum", "Minimum"])

    wait_until(
        lambda: recorded("/aws/sagemaker/Endpoints", "MemoryUtilization"),
        30,
        "the variant's memory utilization",
    )
    # The copy's memory over the two instances' 16 GiB: more than nothing, far from all.
    memory = recorded("/aws/sagemaker/Endpoints", "MemoryUtilization")
    assert 0 < max(p["Maximum"] for p in memory) < 50, memory
    assert recorded("/aws/sagemaker/Endpoints", "CPUUtilization")
    counts = recorded("Modelhost/Endpoints", "InstanceCount")
    assert counts and max(p["Maximum"] for p in counts) == 2, counts
