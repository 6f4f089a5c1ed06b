"""Reading back what the server recorded in its metric history, as a CloudWatch client
does: GetMetricStatistics over the last minutes."""

from __future__ import annotations

import datetime
from typing import Any


def variant(endpoint: str, name: str = "AllTraffic") -> dict[str, str]:
    """SageMaker's dimensions of an endpoint's variant."""
    return {"EndpointName": endpoint, "VariantName": name}


def recent(
    cw: Any,
    namespace: str,
    metric: str,
    dimensions: dict[str, str],
    period: int,
    statistics: list[str],
    extended: list[str] | None = None,
    minutes: int = 30,
) -> list[dict[str, Any]]:
    """The datapoints of the last `minutes` (and of the minute to come, so that a point
    being recorded now is in)."""
    now = datetime.datetime.now(datetime.UTC)
    asked: dict[str, Any] = {"Statistics": statistics} if statistics else {}
    if extended:
        asked["ExtendedStatistics"] = extended
    points: list[dict[str, Any]] = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": key, "Value": value} for key, value in dimensions.items()],
        StartTime=now - datetime.timedelta(minutes=minutes),
        EndTime=now + datetime.timedelta(minutes=1),
        Period=period,
        **asked,
    )["Datapoints"]
    return points
