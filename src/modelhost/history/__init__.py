"""Metric history as CloudWatch keeps it: statistic sets with percentile sketches at 10 s
and 1 min resolution in a SQLite file, and the one query that reads them."""

from modelhost.history.distribution import Distribution
from modelhost.history.query import (
    PLAIN_STATISTICS,
    Datapoint,
    StatisticError,
    quantile,
    resolution_for,
    statistics,
)
from modelhost.history.store import (
    HIGH_RESOLUTION,
    STANDARD_RESOLUTION,
    MetricStore,
    Point,
    Series,
    SeriesKey,
    dimensions_key,
)

__all__ = [
    "HIGH_RESOLUTION",
    "PLAIN_STATISTICS",
    "STANDARD_RESOLUTION",
    "Datapoint",
    "Distribution",
    "MetricStore",
    "Point",
    "Series",
    "SeriesKey",
    "StatisticError",
    "dimensions_key",
    "quantile",
    "resolution_for",
    "statistics",
]
