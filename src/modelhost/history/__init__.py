"""Metric history as CloudWatch keeps it: statistic sets with percentile sketches at 10 s
resolution with 1 min, 5 min and 1 h rollups, in a SQLite file, and the one query that
reads them."""

from modelhost.history.distribution import Distribution
from modelhost.history.query import (
    Columns,
    Datapoint,
    StatisticError,
    columns,
    quantile,
    resolution_for,
    statistics,
)
from modelhost.history.store import (
    MetricStore,
    Point,
    Series,
    SeriesKey,
    dimensions_key,
    retention,
)

__all__ = [
    "Columns",
    "Datapoint",
    "Distribution",
    "MetricStore",
    "Point",
    "Series",
    "SeriesKey",
    "StatisticError",
    "columns",
    "dimensions_key",
    "quantile",
    "resolution_for",
    "retention",
    "statistics",
]
