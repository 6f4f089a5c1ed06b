"""Statistics of one metric over a time range, by period: the one question the history
answers, for GetMetricData, GetMetricStatistics and anything else that charts a series.

    statistics(store, ("AWS/SageMaker", "ModelLatency", dims), start, end, 60, ["p99"])

A period reads the coarsest resolution that divides it: an hour's multiple the hourly
rollups, 5 minutes' the 5-minute ones, a minute's the minutes, any other multiple of 10 s
the 10 s points (kept for a shorter time, as CloudWatch keeps its high-resolution data).
Periods start at `start` rounded down to that resolution; datapoints come oldest first,
only for periods that hold data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from modelhost.history.distribution import percentiles
from modelhost.history.store import (
    HIGH_RESOLUTION,
    RESOLUTIONS,
    Aggregates,
    MetricStore,
    SeriesKey,
)

PLAIN_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d{1,10})?|100(?:\.0+)?)$")


class StatisticError(ValueError):
    """A statistic or period the history cannot answer; the message names it."""


class Datapoint(NamedTuple):
    timestamp: int
    values: dict[str, float]


def quantile(statistic: str) -> float | None:
    """p99 -> 0.99, p99.9 -> 0.999; None for the plain statistics. Other extended
    statistics (trimmed means, percentile ranks...) are refused by name."""
    if statistic in PLAIN_STATISTICS:
        return None
    match = _PERCENTILE.match(statistic)
    if match is None:
        raise StatisticError(
            f"The statistic {statistic[:64]!r} is not supported; use SampleCount, "
            "Average, Sum, Minimum, Maximum or a percentile pNN.NN (trimmed means, "
            "winsorized means and percentile ranks are not implemented)."
        )
    return float(match.group(1)) / 100.0


def resolution_for(period: int) -> int:
    if period <= 0 or period % HIGH_RESOLUTION:
        raise StatisticError(
            f"The period {period} is not supported: metrics are kept at 10 s and 1 min "
            "resolution, so a period must be a multiple of 10 seconds."
        )
    return max(r for r in RESOLUTIONS if period % r == 0)


class Columns(NamedTuple):
    """A series' periods that hold data as columns, oldest first: each period's start and
    each statistic's value, NaN where the period has none (an average of no samples, a
    percentile of statistic sets only). What a day of datapoints costs to answer: numpy
    per period, no Python object per datapoint until the answer is written."""

    timestamps: np.ndarray  # int64
    values: dict[str, np.ndarray]

    @classmethod
    def empty(cls, wanted: Sequence[str]) -> Columns:
        return cls(np.empty(0, np.int64), {statistic: np.empty(0) for statistic in wanted})


def columns(
    store: MetricStore,
    series: SeriesKey,
    start: float,
    end: float,
    period: int,
    wanted: Sequence[str],
) -> tuple[str | None, Columns]:
    """The unit of the series (None if it was never recorded) and its periods."""
    resolution = resolution_for(period)
    quantiles = {statistic: quantile(statistic) for statistic in wanted}
    found = store.find(series)
    if found is None:
        return None, Columns.empty(wanted)
    first = int(start // resolution * resolution)
    last = int(-(-end // resolution) * resolution)
    asked = [(s, q) for s, q in quantiles.items() if q is not None]
    with store.snapshot():
        aggregates = store.aggregates(found.id, resolution, first, last, period)
        held = (aggregates.starts - first) // period
        sketched = (
            store.sketches(found.id, resolution, first, last, period)
            if asked and len(held)
            else None
        )
    values = {s: _plain(s, aggregates) for s, q in quantiles.items() if q is None}
    if sketched is not None:
        # Indexed by the periods that hold data, however long the range asked for (in
        # one snapshot, every sketch's period holds its numbers).
        owners, sketches = sketched
        estimates = percentiles(
            np.searchsorted(held, owners), sketches, len(held), [q for _, q in asked]
        )
        for column, (statistic, _) in enumerate(asked):
            # NaN (a period with no values) stays NaN through the clamp.
            values[statistic] = np.minimum(
                np.maximum(estimates[:, column], aggregates.minimum), aggregates.maximum
            )
    for statistic, _ in asked:
        values.setdefault(statistic, np.full(len(held), np.nan))
    return found.unit, Columns(aggregates.starts, {s: values[s] for s in quantiles})


def statistics(
    store: MetricStore,
    series: SeriesKey,
    start: float,
    end: float,
    period: int,
    wanted: Sequence[str],
) -> tuple[str | None, list[Datapoint]]:
    """The unit of the series (None if it was never recorded) and its datapoints, each
    with the statistics its period has a value for."""
    unit, found = columns(store, series, start, end, period, wanted)
    listed = [(statistic, column.tolist()) for statistic, column in found.values.items()]
    points = []
    for position, timestamp in enumerate(found.timestamps.tolist()):
        values = {}
        for statistic, column in listed:
            value = column[position]
            if not math.isnan(value):
                values[statistic] = value
        points.append(Datapoint(timestamp, values))
    return unit, points


def _plain(statistic: str, aggregates: Aggregates) -> np.ndarray:
    if statistic == "Average":
        average = np.full(len(aggregates.samples), np.nan)
        np.divide(aggregates.total, aggregates.samples, out=average, where=aggregates.samples != 0)
        return average
    return {
        "SampleCount": aggregates.samples,
        "Sum": aggregates.total,
        "Minimum": aggregates.minimum,
        "Maximum": aggregates.maximum,
    }[statistic]
