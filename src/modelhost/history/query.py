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

from modelhost.history.distribution import percentiles
from modelhost.history.store import (
    HIGH_RESOLUTION,
    RESOLUTIONS,
    Aggregate,
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


def statistics(
    store: MetricStore,
    series: SeriesKey,
    start: float,
    end: float,
    period: int,
    wanted: Sequence[str],
) -> tuple[str | None, list[Datapoint]]:
    """The unit of the series (None if it was never recorded) and its datapoints."""
    resolution = resolution_for(period)
    quantiles = {statistic: quantile(statistic) for statistic in wanted}
    found = store.find(series)
    if found is None:
        return None, []
    first = int(start // resolution * resolution)
    last = int(-(-end // resolution) * resolution)
    aggregates = store.aggregates(found.id, resolution, first, last, period)
    asked = [(s, q) for s, q in quantiles.items() if q is not None]
    estimates = None
    if asked and aggregates:
        # Indexed by the periods that hold data, however long the range asked for.
        index = {(a.start - first) // period: i for i, a in enumerate(aggregates)}
        rows = store.sketches(found.id, resolution, first, last, period)
        estimates = percentiles(
            [(index[owner], sketch) for owner, sketch in rows],
            len(aggregates),
            [q for _, q in asked],
        )
    points = []
    for position, aggregate in enumerate(aggregates):
        values: dict[str, float] = {}
        for statistic in wanted:
            value = _plain(statistic, aggregate)
            if value is not None:
                values[statistic] = value
        if estimates is not None:
            row = estimates[position]
            for (statistic, _), estimate in zip(asked, row.tolist(), strict=True):
                if not math.isnan(estimate):
                    values[statistic] = min(max(estimate, aggregate.minimum), aggregate.maximum)
        points.append(Datapoint(aggregate.start, values))
    return found.unit, points


def _plain(statistic: str, aggregate: Aggregate) -> float | None:
    if statistic == "SampleCount":
        return aggregate.samples
    if statistic == "Sum":
        return aggregate.total
    if statistic == "Average":
        return aggregate.total / aggregate.samples if aggregate.samples else None
    if statistic == "Minimum":
        return aggregate.minimum
    if statistic == "Maximum":
        return aggregate.maximum
    return None
