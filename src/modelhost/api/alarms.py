"""CloudWatch metric alarms: PutMetricAlarm / DescribeAlarms / DescribeAlarmsForMetric /
DeleteAlarms.

An alarm watches one metric the server records (the names and dimensions scaling policies
use, see `controllers/scaling_metrics.py`). The autoscaling controller evaluates alarms
and runs the step scaling policies their AlarmActions name, as CloudWatch does on AWS.
Alarms on any other metric read the metric history (modelhost.history): the latency
metrics the server records and users' own (PutMetricData). Alarms on metrics nobody
publishes are accepted, as CloudWatch accepts them, and stay INSUFFICIENT_DATA.
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import page
from modelhost.api.resources import upsert
from modelhost.domain import kinds
from modelhost.errors import AlarmNotFound, ValidationError

KIND = kinds.METRIC_ALARM
_UNSUPPORTED = ("Metrics", "ThresholdMetricId")
#: What the alarm controller writes (controllers/alarms.py); PutMetricAlarm keeps it.
_STATE = (
    "StateValue",
    "StateReason",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "_datapoints",
)
OPERATORS = (
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
)

Record = dict[str, Any]


def put_metric_alarm(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    for field in _UNSUPPORTED:
        if field in params:
            raise ValidationError(
                f"{field} (metric math) is not supported; name one metric "
                "with Namespace, MetricName and Dimensions."
            )
    for field in ("MetricName", "Namespace", "Period", "Threshold"):
        if field not in params:
            raise ValidationError(f"The parameter {field} is required.")
    if params.get("ComparisonOperator") not in OPERATORS:
        raise ValidationError(
            f"ComparisonOperator must be one of {', '.join(OPERATORS)}; "
            "anomaly detection bands are not supported."
        )
    if ("Statistic" in params) == ("ExtendedStatistic" in params):
        raise ValidationError("Exactly one of Statistic and ExtendedStatistic is required.")
    periods = params["EvaluationPeriods"]
    to_alarm = params.get("DatapointsToAlarm", periods)
    if not 1 <= to_alarm <= periods:
        raise ValidationError("DatapointsToAlarm must be between 1 and EvaluationPeriods.")
    missing = params.get("TreatMissingData", "missing")
    if missing not in ("breaching", "notBreaching", "ignore", "missing"):
        raise ValidationError(
            f"Invalid TreatMissingData {missing[:64]!r}; use breaching, "
            "notBreaching, ignore or missing."
        )
    name = params["AlarmName"]
    now = ctx.now()
    s = ctx.settings
    configuration: Record = {
        "AlarmName": name,
        "AlarmArn": f"arn:aws:cloudwatch:{s.region}:{s.account_id}:alarm:{name}",
        "ActionsEnabled": params.get("ActionsEnabled", True),
        "OKActions": params.get("OKActions", []),
        "AlarmActions": params.get("AlarmActions", []),
        "InsufficientDataActions": params.get("InsufficientDataActions", []),
        "AlarmConfigurationUpdatedTimestamp": now,
        "Dimensions": params.get("Dimensions", []),
        "DatapointsToAlarm": to_alarm,
        "TreatMissingData": missing,
        **{
            k: params[k]
            for k in (
                "AlarmDescription",
                "MetricName",
                "Namespace",
                "Statistic",
                "ExtendedStatistic",
                "Period",
                "Unit",
                "EvaluationPeriods",
                "Threshold",
                "ComparisonOperator",
                "EvaluateLowSampleCountPercentile",
            )
            if k in params
        },
    }
    initial: Record = {
        "StateValue": "INSUFFICIENT_DATA",
        "StateReason": "Unchecked: Initial alarm creation",
        "StateUpdatedTimestamp": now,
        "StateTransitionedTimestamp": now,
        "_datapoints": [],
    }

    def change(current: Record | None) -> Record:
        """The configuration is the request's; the state is the alarm controller's, and
        carries over a reconfiguration, as on AWS. Read from the record as it is when
        written, so a state the controller set meanwhile is kept."""
        state = initial if current is None else {k: current[k] for k in _STATE}
        return {**configuration, **state}

    upsert(ctx, KIND, name, change)
    return {}


def _matches(alarm: Record, params: dict[str, Any]) -> bool:
    names = params.get("AlarmNames")
    if names and alarm["AlarmName"] not in names:
        return False
    if not alarm["AlarmName"].startswith(params.get("AlarmNamePrefix", "")):
        return False
    if "StateValue" in params and alarm["StateValue"] != params["StateValue"]:
        return False
    prefix = params.get("ActionPrefix")
    return prefix is None or any(a.startswith(prefix) for a in alarm["AlarmActions"])


def describe_alarms(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Metric alarms only: modelhost has no composite alarms."""
    if params.get("AlarmNames") and "AlarmNamePrefix" in params:
        raise ValidationError("AlarmNames and AlarmNamePrefix cannot be used together.")
    alarms = sorted(
        (a for a in ctx.store.list(KIND) if _matches(a, params)), key=lambda a: a["AlarmName"]
    )
    return {
        **page(alarms, params, "MetricAlarms", params.get("MaxRecords", 50)),
        "CompositeAlarms": [],
    }


def describe_alarms_for_metric(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    def dims(items: list[Record]) -> set[tuple[str, str]]:
        return {(d["Name"], d["Value"]) for d in items}

    wanted = dims(params.get("Dimensions", []))
    return {
        "MetricAlarms": sorted(
            (
                a
                for a in ctx.store.list(KIND)
                if a["MetricName"] == params["MetricName"]
                and a["Namespace"] == params["Namespace"]
                and all(
                    params.get(k, a.get(k)) == a.get(k)
                    for k in ("Statistic", "ExtendedStatistic", "Period", "Unit")
                )
                and (not wanted or dims(a["Dimensions"]) == wanted)
            ),
            key=lambda a: a["AlarmName"],
        )
    }


def delete_alarms(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """All or nothing: an unknown name deletes none, as on AWS."""
    names = params["AlarmNames"]
    unknown = [n for n in names if ctx.store.get(KIND, n) is None]
    if unknown:
        raise AlarmNotFound(f"Alarm(s) not found: {', '.join(unknown)[:300]}")
    for name in names:
        ctx.store.delete(KIND, name)
    return {}
