"""Application Auto Scaling: RegisterScalableTarget / DescribeScalableTargets /
DeregisterScalableTarget, the tags of targets, and what the other autoscaling operations
share about targets.

A scalable target is an endpoint variant (`endpoint/NAME/variant/VARIANT`, dimension
`sagemaker:variant:DesiredInstanceCount`) with the range autoscaling may move its
instance count in. The record also keeps what the autoscaling controller has to remember
across restarts (`_state`: last scaling times for cooldowns, scheduled runs).
"""

from __future__ import annotations

import uuid
from typing import Any

from modelhost.api import listing
from modelhost.api.context import Context
from modelhost.api.resources import public
from modelhost.domain import kinds
from modelhost.domain.scaling import (
    COMPONENT_DIMENSION,
    COMPONENT_PREFIX,
    DIMENSION,
    NAMESPACE,
    child_key,
    target_key,
)
from modelhost.errors import ObjectNotFound, ResourceNotFound, ValidationError

KIND = kinds.SCALABLE_TARGET
POLICY_KIND = kinds.SCALING_POLICY
ACTION_KIND = kinds.SCHEDULED_ACTION
_SERVICE_ROLE = (
    "role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
_PAGE_LIMIT = 50

Record = dict[str, Any]


def parse_resource_id(resource_id: str) -> tuple[str, str]:
    """(endpoint, variant) of `endpoint/NAME/variant/VARIANT`."""
    parts = resource_id.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant" or not all(parts):
        raise ValidationError(
            f"Unsupported resource ID {resource_id[:200]!r}: SageMaker variants are "
            "endpoint/ENDPOINT_NAME/variant/VARIANT_NAME."
        )
    return parts[1], parts[3]


def check_target_kind(params: dict[str, Any]) -> None:
    if params["ServiceNamespace"] != NAMESPACE:
        raise ValidationError(
            f"Unsupported service namespace {params['ServiceNamespace']}; modelhost scales "
            f"SageMaker endpoint variants (ServiceNamespace {NAMESPACE})."
        )
    dimension = params.get("ScalableDimension")
    if dimension is None:  # optional where it filters (the Describe calls): the resource's
        return
    if "ResourceId" not in params:
        if dimension not in (DIMENSION, COMPONENT_DIMENSION):
            raise ValidationError(
                f"Unsupported scalable dimension {dimension[:200]}; SageMaker scales on "
                f"{DIMENSION} and {COMPONENT_DIMENSION}."
            )
        return
    if params["ResourceId"].startswith(COMPONENT_PREFIX):
        if dimension != COMPONENT_DIMENSION:
            raise ValidationError(
                f"Unsupported scalable dimension {dimension[:200]}; inference components "
                f"scale on {COMPONENT_DIMENSION}."
            )
        return
    if dimension != DIMENSION:
        raise ValidationError(
            f"Unsupported scalable dimension {dimension[:200]}; SageMaker variants scale on "
            f"{DIMENSION}."
        )


def require_target(ctx: Context, params: dict[str, Any]) -> Record:
    """The registered target a policy or scheduled action belongs to."""
    check_target_kind(params)
    record = ctx.store.get(KIND, target_key(params["ResourceId"]))
    if record is None:
        raise ObjectNotFound(
            f"No scalable target registered for service namespace: {NAMESPACE}, resource ID: "
            f"{params['ResourceId'][:200]}, scalable dimension: {DIMENSION}"
        )
    return record


def autoscaling_arn(ctx: Context, kind: str, resource_id: str, label: str, name: str) -> str:
    """Policy and scheduled-action ARNs as AWS spells them."""
    s = ctx.settings
    return (
        f"arn:aws:autoscaling:{s.region}:{s.account_id}:{kind}:{uuid.uuid4()}:"
        f"resource/{NAMESPACE}/{resource_id}:{label}/{name}"
    )


def page(items: list[Record], params: dict[str, Any], result_key: str) -> dict[str, Any]:
    """One page of an Application Auto Scaling Describe*, at most 50 by default."""
    size = params.get("MaxResults") or _PAGE_LIMIT
    if size < 1:
        raise ValidationError("MaxResults must be at least 1")
    return listing.page(items, params, result_key, size, public)


def describe_children(
    ctx: Context,
    params: dict[str, Any],
    kind: str,
    name_key: str,
    names_param: str,
    result_key: str,
) -> dict[str, Any]:
    """DescribeScalingPolicies / DescribeScheduledActions: filter by names and resource,
    oldest first, one page."""
    check_target_kind(params)
    names = set(params.get(names_param) or [])
    items = [
        item
        for item in ctx.store.list(kind)
        if (not names or item[name_key] in names)
        and params.get("ResourceId", item["ResourceId"]) == item["ResourceId"]
    ]
    items.sort(key=lambda item: item["CreationTime"])
    return page(items, params, result_key)


def delete_child(
    ctx: Context, params: dict[str, Any], kind: str, name_key: str, label: str
) -> dict[str, Any]:
    """DeleteScalingPolicy / DeleteScheduledAction."""
    check_target_kind(params)
    if not ctx.store.delete(kind, child_key(params["ResourceId"], params[name_key])):
        raise ObjectNotFound(
            f"No {label} found for service namespace: {NAMESPACE}, resource ID: "
            f"{params['ResourceId'][:200]}, scalable dimension: {DIMENSION}, "
            f"name: {params[name_key][:200]}"
        )
    ctx.notify()
    return {}


def _check_capacities(ctx: Context, low: int | None, high: int | None) -> None:
    for label, value in (("Minimum", low), ("Maximum", high)):
        if value is not None and value < 0:
            raise ValidationError(f"{label} capacity cannot be negative ({value}).")
    if low is not None and high is not None and low > high:
        raise ValidationError(
            f"Minimum capacity ({low}) cannot be greater than maximum capacity ({high})."
        )
    if high is not None and high > ctx.settings.max_instances:
        raise ValidationError(
            f"Maximum capacity ({high}) exceeds the {ctx.settings.max_instances} instances "
            "this modelhost server runs at most (MODELHOST_MAX_INSTANCES)."
        )


def register_scalable_target(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    check_target_kind(params)
    resource_id = params["ResourceId"]
    component = None
    if resource_id.startswith(COMPONENT_PREFIX):
        component = resource_id[len(COMPONENT_PREFIX) :]
        found = ctx.store.get(kinds.INFERENCE_COMPONENT, component)
        if found is None:
            raise ValidationError(
                f"The target resource {resource_id[:200]} does not exist: no inference "
                f"component {component[:100]}."
            )
        endpoint, variant = found["EndpointName"], found["VariantName"]
    else:
        endpoint, variant = parse_resource_id(resource_id)
    record = ctx.store.get("endpoint", endpoint)
    if record is None or variant not in record["_desired"]["capacity"]:
        raise ValidationError(
            f"The target resource {resource_id[:200]} does not exist: no endpoint {endpoint} "
            f"with a production variant {variant}."
        )
    if "serverless" in record["_desired"]["capacity"][variant]:
        raise ValidationError(
            f"Variant {variant} of endpoint {endpoint} is serverless: it starts and stops "
            "its instances by itself and has no DesiredInstanceCount to scale."
        )
    key = target_key(resource_id)
    low, high = params.get("MinCapacity"), params.get("MaxCapacity")
    suspended = params.get("SuspendedState", {})

    def change(current: Record) -> Record:
        new_low = current["MinCapacity"] if low is None else low
        new_high = current["MaxCapacity"] if high is None else high
        _check_capacities(ctx, new_low, new_high)
        current.update(
            MinCapacity=new_low,
            MaxCapacity=new_high,
            SuspendedState={**current["SuspendedState"], **suspended},
        )
        return current

    updated = ctx.store.modify(KIND, key, change)
    if updated is None:
        if low is None or high is None:
            raise ValidationError(
                "MinCapacity and MaxCapacity are required to register a new scalable target."
            )
        _check_capacities(ctx, low, high)
        arn = (
            f"arn:aws:application-autoscaling:{ctx.settings.region}:"
            f"{ctx.settings.account_id}:scalable-target/{uuid.uuid4().hex}"
        )
        new = {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": resource_id,
            "ScalableDimension": DIMENSION if component is None else COMPONENT_DIMENSION,
            "MinCapacity": low,
            "MaxCapacity": high,
            "RoleARN": params.get("RoleARN")
            or f"arn:aws:iam::{ctx.settings.account_id}:{_SERVICE_ROLE}",
            "CreationTime": ctx.now(),
            "SuspendedState": {
                "DynamicScalingInSuspended": False,
                "DynamicScalingOutSuspended": False,
                "ScheduledScalingSuspended": False,
                **suspended,
            },
            "ScalableTargetARN": arn,
            "_endpoint": endpoint,
            # An inference component's target has no variant count to drive: its copy
            # count is the component controller's (scale out from zero on a request).
            "_variant": variant if component is None else None,
            **({} if component is None else {"_component": component}),
            "_state": {},
        }
        if not ctx.store.insert(KIND, key, new, arn=arn, tags=params.get("Tags") or {}):
            return register_scalable_target(ctx, params)  # registered meanwhile: update it
        updated = new
    elif params.get("Tags"):
        ctx.store.set_tags(updated["ScalableTargetARN"], params["Tags"])
    ctx.notify()
    return {"ScalableTargetARN": updated["ScalableTargetARN"]}


def describe_scalable_targets(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    check_target_kind(params)
    wanted = set(params.get("ResourceIds") or [])
    targets = [t for t in ctx.store.list(KIND) if not wanted or t["ResourceId"] in wanted]
    targets.sort(key=lambda t: t["CreationTime"])
    return page(targets, params, "ScalableTargets")


def deregister_scalable_target(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Removes the target with its policies and scheduled actions, as AWS does."""
    target = require_target(ctx, params)
    prefix = child_key(target["ResourceId"], "")
    for kind in (POLICY_KIND, ACTION_KIND):
        for name in ctx.store.names(kind):
            if name.startswith(prefix):
                ctx.store.delete(kind, name)
    ctx.store.delete(KIND, target_key(target["ResourceId"]))
    ctx.store.delete_tags(target["ScalableTargetARN"])
    ctx.notify()
    return {}


def _require_arn(ctx: Context, arn: str) -> None:
    if not any(t["ScalableTargetARN"] == arn for t in ctx.store.list(KIND)):
        raise ResourceNotFound(f"No scalable target with ARN {arn[:300]}.", ResourceName=arn)


def tag_resource(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _require_arn(ctx, params["ResourceARN"])
    ctx.store.set_tags(params["ResourceARN"], params["Tags"])
    return {}


def untag_resource(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _require_arn(ctx, params["ResourceARN"])
    ctx.store.delete_tags(params["ResourceARN"], params["TagKeys"])
    return {}


def list_tags_for_resource(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _require_arn(ctx, params["ResourceARN"])
    return {"Tags": ctx.store.tags(params["ResourceARN"])}
