"""UpdateEndpoint's DeploymentConfig and retention flags, checked before anything is
recorded: a policy the endpoint controller could not follow is refused here, never
deployed some other way.

botocore's validator has already checked the shapes and ranges; what is left is what
SageMaker checks beyond them (one policy, the sizes each routing type needs, alarms that
exist, no guardrails for serverless variants).
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.domain import kinds
from modelhost.errors import ValidationError


def _check_size(what: str, size: dict[str, Any] | None) -> None:
    if size is None:
        raise ValidationError(f"{what} is required for this TrafficRoutingConfiguration Type.")
    if size["Type"] == "CAPACITY_PERCENT" and not 0 < size["Value"] <= 100:
        raise ValidationError(f"{what}: a CAPACITY_PERCENT Value must be between 1 and 100.")


def check_deployment_config(
    ctx: Context, config: dict[str, Any], desired: dict[str, Any]
) -> dict[str, Any]:
    """The DeploymentConfig as the controller will follow it."""
    blue_green = config.get("BlueGreenUpdatePolicy")
    rolling = config.get("RollingUpdatePolicy")
    if blue_green is not None and rolling is not None:
        raise ValidationError(
            "DeploymentConfig takes one of BlueGreenUpdatePolicy and RollingUpdatePolicy, not both."
        )
    if any("serverless" in c for c in desired["capacity"].values()):
        raise ValidationError(
            "DeploymentConfig is not supported for endpoints with serverless variants "
            "(ServerlessConfig)."
        )
    if blue_green is not None:
        routing = blue_green["TrafficRoutingConfiguration"]
        if routing["Type"] == "CANARY":
            _check_size("CanarySize", routing.get("CanarySize"))
        elif routing["Type"] == "LINEAR":
            _check_size("LinearStepSize", routing.get("LinearStepSize"))
    if rolling is not None:
        _check_size("MaximumBatchSize", rolling["MaximumBatchSize"])
        if "RollbackMaximumBatchSize" in rolling:
            _check_size("RollbackMaximumBatchSize", rolling["RollbackMaximumBatchSize"])
    for alarm in config.get("AutoRollbackConfiguration", {}).get("Alarms", []):
        if "AlarmName" not in alarm:
            raise ValidationError("AutoRollbackConfiguration.Alarms: AlarmName is required.")
        if ctx.store.get(kinds.METRIC_ALARM, alarm["AlarmName"]) is None:
            raise ValidationError(
                f"AutoRollbackConfiguration: alarm {alarm['AlarmName']} does not exist; "
                "create it with PutMetricAlarm first."
            )
    return config


def retain_variant_properties(
    params: dict[str, Any], running: dict[str, Any], desired: dict[str, Any]
) -> None:
    """RetainAllVariantProperties: variants in both configs keep the weight and instance
    count they run with now, and the endpoint keeps its DataCaptureConfig, except for the
    properties ExcludeRetainedVariantProperties names (those come from the new config)."""
    excluded = {
        p["VariantPropertyType"] for p in params.get("ExcludeRetainedVariantProperties", [])
    }
    if excluded and not params.get("RetainAllVariantProperties"):
        raise ValidationError(
            "ExcludeRetainedVariantProperties requires RetainAllVariantProperties to be true."
        )
    if not params.get("RetainAllVariantProperties"):
        return
    for variant, capacity in running["capacity"].items():
        new = desired["capacity"].get(variant)
        if new is None:
            continue
        if "DesiredWeight" not in excluded:
            new["weight"] = capacity["weight"]
        if "DesiredInstanceCount" not in excluded and "serverless" not in new:
            new["count"] = capacity["count"]
    if "DataCaptureConfig" not in excluded:
        capture = running["config"].get("DataCaptureConfig")
        desired["config"] = {k: v for k, v in desired["config"].items() if k != "DataCaptureConfig"}
        if capture is not None:
            desired["config"]["DataCaptureConfig"] = capture
