"""PutScheduledAction / DescribeScheduledActions / DeleteScheduledAction.

A scheduled action sets a target's MinCapacity / MaxCapacity when its schedule fires
(`at(...)`, `rate(...)` or `cron(...)`, in `Timezone`, between `StartTime` and `EndTime`);
the autoscaling controller fires it and then moves the instance count into the new range.
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import epoch
from modelhost.api.resources import public, upsert
from modelhost.api.scalable_targets import (
    ACTION_KIND,
    autoscaling_arn,
    delete_child,
    describe_children,
    require_target,
)
from modelhost.domain import scaling_schedules
from modelhost.domain.scaling import child_key
from modelhost.errors import ValidationError

KIND = ACTION_KIND

Record = dict[str, Any]


def put_scheduled_action(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    target = require_target(ctx, params)
    resource_id = target["ResourceId"]
    name = params["ScheduledActionName"]
    key = child_key(resource_id, name)
    now = ctx.now()

    def change(current: Record | None) -> Record:
        """The request's members over the stored action's (a Put may name only some),
        merged with the action as it is when written, so neither another Put's members nor
        the controller's record of its last run (`_last_run`) made meanwhile are lost."""
        existing = current or {}
        merged = _merged(public(existing), params)
        return {
            **{k: v for k, v in existing.items() if k.startswith("_")},
            **merged,
            "ScheduledActionName": name,
            "ScheduledActionARN": existing.get("ScheduledActionARN")
            or autoscaling_arn(ctx, "scheduledAction", resource_id, "scheduledActionName", name),
            "ServiceNamespace": target["ServiceNamespace"],
            "ResourceId": resource_id,
            "ScalableDimension": target["ScalableDimension"],
            "CreationTime": existing.get("CreationTime", now),
            # Runs are counted from when the schedule was last put.
            "_since": now,
        }

    upsert(ctx, KIND, key, change)
    ctx.notify()
    return {}


def _merged(stored: Record, params: dict[str, Any]) -> Record:
    """The schedule members of `params` over those of `stored`, checked."""
    merged = {
        **stored,
        **{
            k: v
            for k, v in params.items()
            if k in ("Schedule", "Timezone", "StartTime", "EndTime", "ScalableTargetAction")
        },
    }
    if "Schedule" not in merged:
        raise ValidationError("Schedule is required to create a scheduled action.")
    try:
        scaling_schedules.parse(merged["Schedule"])
        scaling_schedules.zone(merged.get("Timezone"))
    except ValueError as exc:
        raise ValidationError(f"Invalid schedule {merged['Schedule'][:200]!r}: {exc}") from None
    for moment in ("StartTime", "EndTime"):
        if moment in merged:
            merged[moment] = epoch(merged[moment])
    if merged.get("StartTime", 0) > merged.get("EndTime", float("inf")):
        raise ValidationError("StartTime must be before EndTime.")
    action = merged.get("ScalableTargetAction", {})
    low, high = action.get("MinCapacity"), action.get("MaxCapacity")
    if low is None and high is None:
        raise ValidationError("ScalableTargetAction needs MinCapacity or MaxCapacity.")
    if any(v is not None and v < 0 for v in (low, high)) or (
        low is not None and high is not None and low > high
    ):
        raise ValidationError(
            f"ScalableTargetAction capacities must be non-negative with MinCapacity ({low}) "
            f"at most MaxCapacity ({high})."
        )
    return merged


def describe_scheduled_actions(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return describe_children(
        ctx, params, KIND, "ScheduledActionName", "ScheduledActionNames", "ScheduledActions"
    )


def delete_scheduled_action(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return delete_child(ctx, params, KIND, "ScheduledActionName", "scheduled action")
