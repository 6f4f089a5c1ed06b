"""Evaluates CloudWatch metric alarms and runs the step scaling policies they name.

Each autoscaling evaluation is one datapoint of every alarm: the alarm's metric over the
resolver's window (MODELHOST_AUTOSCALING_WINDOW stands in for the alarm's Period),
compared with its threshold. The alarm is in ALARM when DatapointsToAlarm of the last
EvaluationPeriods datapoints breach, OK when fewer do, INSUFFICIENT_DATA while there is no
data (TreatMissingData says how a missing datapoint counts). While in ALARM, every
evaluation invokes the AlarmActions that are scaling policy ARNs, as CloudWatch does;
other actions (SNS topics...) are kept and ignored.

An alarm on any other metric (ModelLatency, OverheadLatency, a user's own put with
PutMetricData...) reads the metric history: the alarm's statistic (or percentile) over
its last Period, the current one included. The scaling metrics keep the resolver's
window: it reacts within an evaluation, where a minute's history point would lag.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from modelhost.api import Context
from modelhost.controllers.scaling_metrics import MetricResolver, SeriesKey, series_key
from modelhost.domain.kinds import METRIC_ALARM as KIND
from modelhost.domain.scaling import ALARM_NAMESPACES
from modelhost.history import StatisticError, dimensions_key, statistics

Record = dict[str, Any]
_COMPARE = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_STEP = "StepScalingPolicyConfiguration"


def alarm_series(alarm: Record) -> tuple[str, dict[str, str]] | None:
    """The series an alarm watches, or None for a metric the server does not record."""
    if alarm["Namespace"] not in ALARM_NAMESPACES or "MetricName" not in alarm:
        return None
    return alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


class AlarmEvaluator:
    def __init__(
        self, ctx: Context, resolver: MetricResolver, owns: Callable[[str | None], bool]
    ) -> None:
        self.ctx = ctx
        self.resolver = resolver
        # Whether this server evaluates alarms on an endpoint (None: on no endpoint).
        self.owns = owns

    def sample(self, alarms: list[Record]) -> Iterator[SeriesKey]:
        """Take a reading of every series one of `alarms` watches; yields their keys."""
        for alarm in alarms:
            series = alarm_series(alarm)
            if series is not None and series[0] in self.resolver:
                self.resolver.sample(*series)
                yield series_key(*series)

    def value(self, alarm: Record, statistic: str | None = None) -> float | None:
        series = alarm_series(alarm)
        if series is None or series[0] not in self.resolver:
            return self._recorded(alarm, statistic)
        return self.resolver.value(*series, statistic or alarm.get("Statistic", "Average"))

    def _recorded(self, alarm: Record, statistic: str | None) -> float | None:
        """The alarm's statistic over its last Period, from the metric history (a
        blocking read: `evaluate` runs off the event loop)."""
        store = self.ctx.history
        if store is None or "MetricName" not in alarm:
            return None
        stat = statistic or alarm.get("Statistic") or alarm.get("ExtendedStatistic", "Average")
        key = (
            alarm["Namespace"],
            alarm["MetricName"],
            dimensions_key((d["Name"], d["Value"]) for d in alarm["Dimensions"]),
        )
        period = int(alarm["Period"])
        now = time.time()
        try:
            _, points = statistics(store, key, now - period, now, period, [stat])
        except StatisticError:
            return None
        return points[-1].values.get(stat) if points else None

    def evaluate(self) -> dict[str, list[tuple[Record, float | None]]]:
        """Move every alarm to its state now; returns the alarms in ALARM (with their
        value) by the action ARNs they invoke. Blocking store calls: the autoscaling
        controller runs it off the event loop."""
        fired: dict[str, list[tuple[Record, float | None]]] = {}
        for alarm in self.ctx.store.list(KIND):
            series = alarm_series(alarm)
            if not self.owns(series[1].get("EndpointName") if series else None):
                continue
            value = self.value(alarm)

            def advance(a: Record, v: float | None = value) -> Record:
                return self._advance(a, v)

            updated = self.ctx.store.modify(KIND, alarm["AlarmName"], advance)
            if updated and updated["StateValue"] == "ALARM" and updated["ActionsEnabled"]:
                for action in updated["AlarmActions"]:
                    fired.setdefault(action, []).append((updated, value))
        return fired

    def _advance(self, alarm: Record, value: float | None) -> Record:
        compare = _COMPARE[alarm["ComparisonOperator"]]
        point = None if value is None else compare(value, alarm["Threshold"])
        missing = alarm["TreatMissingData"]
        if point is None and missing in ("breaching", "notBreaching"):
            point = missing == "breaching"
        if point is None and missing == "ignore":
            return alarm
        periods = alarm["EvaluationPeriods"]
        points = (alarm["_datapoints"] + [point])[-periods:]
        alarm["_datapoints"] = points
        known = [p for p in points if p is not None]
        breaching = sum(known)
        if breaching >= alarm["DatapointsToAlarm"]:
            state = "ALARM"
        elif not known:
            state = "INSUFFICIENT_DATA"
        else:
            state = "OK"
        shown = "no data" if value is None else f"{value:.4g}"
        reason = (
            (
                f"Threshold Crossed: {breaching} out of the last {len(points)} datapoints "
                f"breached the threshold ({alarm['Threshold']:g}); latest datapoint: "
                f"{shown}."
            )
            if state != "INSUFFICIENT_DATA"
            else ("Insufficient Data: no datapoints were received for the metric.")
        )
        now = self.ctx.now()
        if state != alarm["StateValue"]:
            alarm["StateTransitionedTimestamp"] = now
        if state != alarm["StateValue"] or reason != alarm["StateReason"]:
            alarm.update(StateValue=state, StateReason=reason, StateUpdatedTimestamp=now)
        return alarm


def step_count(policy: Record, alarm: Record, breach: float, count: int) -> int | None:
    """The instance count a step scaling policy asks for when `alarm` is in ALARM with
    its metric `breach` (by the policy's aggregation); None when no step covers it."""
    config = policy[_STEP]
    delta = breach - alarm["Threshold"]
    adjustment = None
    for step in config["StepAdjustments"]:
        low = step.get("MetricIntervalLowerBound", -math.inf)
        high = step.get("MetricIntervalUpperBound", math.inf)
        # AWS: the lower bound is inclusive above the threshold, the upper one below it.
        if (low <= delta < high) if delta >= 0 else (low < delta <= high):
            adjustment = step["ScalingAdjustment"]
            break
    if adjustment is None:
        return None
    kind = config["AdjustmentType"]
    if kind == "ExactCapacity":
        return int(adjustment)
    if kind == "ChangeInCapacity":
        return count + int(adjustment)
    # AWS rounds a percentage towards zero, but never to no change at all.
    exact = count * adjustment / 100
    change = math.floor(exact) if exact > 0 else math.ceil(exact)
    if change == 0 and exact:
        change = 1 if exact > 0 else -1
    least = config.get("MinAdjustmentMagnitude", 0)
    if adjustment and abs(change) < least:
        change = least if adjustment > 0 else -least
    return count + change
