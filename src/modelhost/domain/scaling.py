"""What Application Auto Scaling's records share between the API and the autoscaling and
alarm controllers: how targets, policies and scheduled actions are keyed in the store,
which metric a target tracking policy follows, and the CloudWatch namespaces an alarm on
an endpoint's metrics may name."""

from __future__ import annotations

from typing import Any

#: The one scalable dimension of a SageMaker variant.
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: An inference component's scalable dimension and resource ID prefix.
COMPONENT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
COMPONENT_PREFIX = "inference-component/"
#: Predefined target tracking metric -> the metric the server records, for variants and
#: for inference components (whose metrics have the dimension InferenceComponentName).
PREDEFINED = {"SageMakerVariantInvocationsPerInstance": "InvocationsPerInstance"}
COMPONENT_PREDEFINED = {
    "SageMakerInferenceComponentInvocationsPerCopy": "InvocationsPerCopy",
    "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution": (
        "ConcurrentRequestsPerCopy"
    ),
}
#: Namespaces under which a CloudWatch alarm may name an endpoint's metrics.
ALARM_NAMESPACES = ("AWS/SageMaker", "/aws/sagemaker/Endpoints", "AWS/SageMaker/Endpoints")

Record = dict[str, Any]


def target_key(resource_id: str, dimension: str = DIMENSION) -> str:
    """Store key of a scalable target."""
    return f"{resource_id}|{dimension}"


def component_resource(name: str) -> str:
    """The ResourceId of an inference component's scalable target."""
    return f"{COMPONENT_PREFIX}{name}"


def child_key(resource_id: str, name: str) -> str:
    """Store key of a policy or scheduled action: its target's key, then its name."""
    return f"{target_key(resource_id)}|{name}"


def tracked_metric(config: Record) -> tuple[str, dict[str, str], str]:
    """(metric name, dimensions, statistic) a target tracking configuration tracks;
    dimensions are as given, the controller fills in the target's endpoint and variant (or
    inference component)."""
    predefined = config.get("PredefinedMetricSpecification")
    if predefined is not None:
        kind = predefined["PredefinedMetricType"]
        return {**PREDEFINED, **COMPONENT_PREDEFINED}[kind], {}, "Average"
    custom = config["CustomizedMetricSpecification"]
    dimensions = {d["Name"]: d["Value"] for d in custom.get("Dimensions", [])}
    return custom["MetricName"], dimensions, custom.get("Statistic", "Average")
