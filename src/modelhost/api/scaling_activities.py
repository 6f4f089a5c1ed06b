"""DescribeScalingActivities, and how the autoscaling controller records what it did.

Every change the controller makes to a variant's instance count (or to a target's range,
by a scheduled action) is an activity saying what and why; it stays `InProgress` until
the endpoint runs the new count. The newest activities of each target are kept.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from modelhost.api.context import Context
from modelhost.api.scalable_targets import check_target_kind, page
from modelhost.domain import kinds
from modelhost.domain.scaling import target_key

KIND = kinds.SCALING_ACTIVITY
_KEEP_PER_TARGET = 100

Record = dict[str, Any]


def record_activity(
    ctx: Context,
    target: Record,
    description: str,
    cause: str,
    status: str = "InProgress",
    **fields: Any,
) -> str:
    """Store a new activity of `target` and return its key; extra fields (StatusMessage,
    private "_" keys the controller needs to finish it) are kept on the record."""
    now = ctx.now()
    activity = {
        "ActivityId": str(uuid.uuid4()),
        "ServiceNamespace": target["ServiceNamespace"],
        "ResourceId": target["ResourceId"],
        "ScalableDimension": target["ScalableDimension"],
        "Description": description,
        "Cause": cause,
        "StartTime": now,
        "StatusCode": status,
        **fields,
    }
    if status != "InProgress":
        activity["EndTime"] = now
    # Keys sort by target, then by time, so a target's history is one ordered range.
    prefix = target_key(target["ResourceId"]) + "|"
    key = f"{prefix}{time.time_ns():020d}"
    ctx.store.put(KIND, key, activity)
    names = [n for n in ctx.store.names(KIND) if n.startswith(prefix)]
    for old in names[:-_KEEP_PER_TARGET]:
        ctx.store.delete(KIND, old)
    return key


def finish_activity(ctx: Context, key: str, status: str, message: str) -> None:
    def change(activity: Record) -> Record:
        activity.update(StatusCode=status, StatusMessage=message, EndTime=ctx.now())
        return activity

    ctx.store.modify(KIND, key, change)


def note_activity(ctx: Context, key: str, message: str) -> None:
    """Say, on an activity still InProgress, what its change waits for (instances no
    node has room for yet), as AWS's StatusMessage does while an activity runs."""

    def change(activity: Record) -> Record | None:
        if activity["StatusCode"] != "InProgress" or activity.get("StatusMessage") == message:
            return None
        activity["StatusMessage"] = message
        return activity

    ctx.store.modify(KIND, key, change)


def open_activities(ctx: Context, resource_id: str) -> dict[str, Record]:
    """A target's activities still InProgress, by store key."""
    prefix = target_key(resource_id) + "|"
    return {
        name: activity
        for name in ctx.store.names(KIND)
        if name.startswith(prefix)
        if (activity := ctx.store.get(KIND, name)) and activity["StatusCode"] == "InProgress"
    }


def describe_scaling_activities(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    check_target_kind(params)
    activities = [
        a
        for a in ctx.store.list(KIND)
        if params.get("ResourceId", a["ResourceId"]) == a["ResourceId"]
    ]
    activities.sort(key=lambda a: a["StartTime"], reverse=True)
    return page(activities, params, "ScalingActivities")
