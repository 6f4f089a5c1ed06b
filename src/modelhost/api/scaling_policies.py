"""PutScalingPolicy / DescribeScalingPolicies / DeleteScalingPolicy.

Target tracking policies track a metric the server records (see
`controllers/scaling_metrics.py`): the predefined `SageMakerVariantInvocationsPerInstance`
(an inference component's target: `SageMakerInferenceComponentInvocationsPerCopy` or
`SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution`), or a customized
metric named as CloudWatch names it. Step scaling policies are checked
and stored as AWS does; the CloudWatch alarms whose AlarmActions name them run them
(`controllers/alarms.py`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from modelhost.api.context import Context
from modelhost.api.resources import upsert
from modelhost.api.scalable_targets import (
    POLICY_KIND,
    autoscaling_arn,
    delete_child,
    describe_children,
    require_target,
)
from modelhost.domain import kinds
from modelhost.domain.scaling import COMPONENT_PREDEFINED, PREDEFINED, child_key
from modelhost.errors import ValidationError

KIND = POLICY_KIND

Record = dict[str, Any]


def _check_target_tracking(ctx: Context, config: Record | None, component: bool) -> None:
    if config is None:
        raise ValidationError(
            "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling "
            "policy."
        )
    target = config["TargetValue"]
    if not math.isfinite(target) or target <= 0:
        raise ValidationError(f"TargetValue must be a positive number, got {target}.")
    for cooldown in ("ScaleOutCooldown", "ScaleInCooldown"):
        if config.get(cooldown, 0) < 0:
            raise ValidationError(f"{cooldown} cannot be negative.")
    predefined = config.get("PredefinedMetricSpecification")
    custom = config.get("CustomizedMetricSpecification")
    if (predefined is None) == (custom is None):
        raise ValidationError(
            "Specify exactly one of PredefinedMetricSpecification and "
            "CustomizedMetricSpecification."
        )
    if predefined is not None:
        allowed, label = (
            (COMPONENT_PREDEFINED, "inference components")
            if component
            else (PREDEFINED, "SageMaker variants")
        )
        if predefined["PredefinedMetricType"] not in allowed:
            raise ValidationError(
                f"Unsupported predefined metric {predefined['PredefinedMetricType'][:200]} "
                f"for {label}; use {', '.join(allowed)}."
            )
        return
    assert custom is not None
    if "Metrics" in custom:
        raise ValidationError(
            "Metric math (CustomizedMetricSpecification.Metrics) is not supported; name one "
            "metric with MetricName."
        )
    name = custom.get("MetricName")
    if not name:
        raise ValidationError("CustomizedMetricSpecification needs a MetricName.")
    if name not in ctx.scaling_metrics:
        raise ValidationError(
            f"Unknown metric {name[:200]!r}; modelhost records "
            f"{', '.join(sorted(ctx.scaling_metrics))}."
        )


def _check_step_scaling(config: Record | None) -> None:
    if config is None:
        raise ValidationError(
            "StepScalingPolicyConfiguration is required for a StepScaling policy."
        )
    if "AdjustmentType" not in config:
        raise ValidationError("StepScalingPolicyConfiguration needs an AdjustmentType.")
    if config.get("Cooldown", 0) < 0:
        raise ValidationError("Cooldown cannot be negative.")
    if "MinAdjustmentMagnitude" in config and (
        config["AdjustmentType"] != "PercentChangeInCapacity"
    ):
        raise ValidationError(
            "MinAdjustmentMagnitude applies to AdjustmentType PercentChangeInCapacity only."
        )
    steps = config.get("StepAdjustments") or []
    if not steps:
        raise ValidationError("StepScalingPolicyConfiguration needs StepAdjustments.")
    bounds = sorted(
        (
            step.get("MetricIntervalLowerBound", -math.inf),
            step.get("MetricIntervalUpperBound", math.inf),
        )
        for step in steps
    )
    for low, high in bounds:
        if low >= high:
            raise ValidationError(
                f"A step's lower bound ({low}) must be below its upper bound ({high})."
            )
    for (_, high), (low, _) in itertools.pairwise(bounds):
        if high != low:
            raise ValidationError("Step adjustment intervals cannot overlap or have gaps.")


def put_scaling_policy(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    target = require_target(ctx, params)
    component = "_component" in target
    policy_type = params.get("PolicyType", "StepScaling")
    if policy_type == "TargetTrackingScaling":
        config_key = "TargetTrackingScalingPolicyConfiguration"
        _check_target_tracking(ctx, params.get(config_key), component)
    elif component:
        raise ValidationError(
            f"Unsupported policy type {policy_type} for inference components: modelhost "
            "scales a component's copies by TargetTrackingScaling policies (and out from "
            "zero on a request)."
        )
    elif policy_type == "StepScaling":
        config_key = "StepScalingPolicyConfiguration"
        _check_step_scaling(params.get(config_key))
    else:
        raise ValidationError(
            f"Unsupported policy type {policy_type} for SageMaker variants; use "
            "TargetTrackingScaling or StepScaling."
        )
    resource_id = target["ResourceId"]
    name = params["PolicyName"]
    key = child_key(resource_id, name)
    config = params[config_key]
    now = ctx.now()

    def change(current: Record | None) -> Record:
        """The policy's configuration is the request's; its ARN and creation time stay
        those of the policy created first (an alarm's actions name that ARN)."""
        return {
            **{k: v for k, v in (current or {}).items() if k.startswith("_")},
            "PolicyARN": current["PolicyARN"]
            if current
            else autoscaling_arn(ctx, "scalingPolicy", resource_id, "policyName", name),
            "PolicyName": name,
            "ServiceNamespace": target["ServiceNamespace"],
            "ResourceId": resource_id,
            "ScalableDimension": target["ScalableDimension"],
            "PolicyType": policy_type,
            config_key: config,
            "Alarms": [],
            "CreationTime": current["CreationTime"] if current else now,
        }

    record = upsert(ctx, KIND, key, change)
    ctx.notify()
    return {"PolicyARN": record["PolicyARN"], "Alarms": []}


def describe_scaling_policies(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """With each policy's `Alarms`: the CloudWatch alarms whose actions invoke it."""
    answer = describe_children(ctx, params, KIND, "PolicyName", "PolicyNames", "ScalingPolicies")
    alarms = ctx.store.list(kinds.METRIC_ALARM)
    for policy in answer["ScalingPolicies"]:
        policy["Alarms"] = [
            {"AlarmName": a["AlarmName"], "AlarmARN": a["AlarmArn"]}
            for a in alarms
            if policy["PolicyARN"] in a["AlarmActions"]
        ]
    return answer


def delete_scaling_policy(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return delete_child(ctx, params, KIND, "PolicyName", "scaling policy")
