"""CloudWatch metrics: GetMetricData, GetMetricStatistics, ListMetrics, PutMetricData.

They read and write the server's metric history (modelhost.history): what the server
records of its endpoints under SageMaker's namespaces and dimensions, and what users put
under their own namespaces. Metric math (`Expression`) and cross-account queries are
refused by name; periods are multiples of 10 s (the finest resolution kept) and
statistics are SampleCount, Average, Sum, Minimum, Maximum and percentiles.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re
import time
from typing import Any

import numpy as np
import orjson

from modelhost.api.context import Context
from modelhost.api.listing import decode_token, encode_token, epoch
from modelhost.errors import ServiceUnavailable, ValidationError
from modelhost.history import (
    Columns,
    Distribution,
    MetricStore,
    Point,
    SeriesKey,
    StatisticError,
    columns,
    dimensions_key,
    quantile,
)

Params = dict[str, Any]
_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_MAX_STATISTICS_POINTS = 1440
_DEFAULT_MAX_DATAPOINTS = 100_800
_LIST_PAGE = 500
# What CloudWatch accepts: two weeks back, two hours ahead.
_PAST_S = 14 * 86400
_FUTURE_S = 2 * 3600


def _store(ctx: Context) -> MetricStore:
    if ctx.history is None:
        raise ServiceUnavailable(
            "Metric history is off on this server (MODELHOST_METRICS_HISTORY=0)."
        )
    return ctx.history


def _time(value: Any) -> float:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    return float(epoch(value))


def _refuse(params: Params, fields: tuple[str, ...], why: str) -> None:
    for name in fields:
        if params.get(name) not in (None, False):
            raise ValidationError(f"{name} is not supported: {why}")


def _series(metric: Params) -> SeriesKey:
    pairs = [(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValidationError(
            f"Metric {metric['MetricName'][:255]} names a dimension more than once: "
            f"{', '.join(sorted(names))[:300]}"
        )
    return metric["Namespace"], metric["MetricName"], dimensions_key(pairs)


def _range(params: Params) -> tuple[float, float]:
    start, end = _time(params["StartTime"]), _time(params["EndTime"])
    if end <= start:
        raise ValidationError("The parameter StartTime must be less than the parameter EndTime.")
    return start, end


def _columns(
    store: MetricStore,
    series: SeriesKey,
    start: float,
    end: float,
    period: int,
    wanted: list[str],
    unit: str | None,
) -> tuple[str | None, Columns]:
    try:
        stored_unit, found = columns(store, series, start, end, period, wanted)
    except StatisticError as error:
        raise ValidationError(str(error)) from None
    if unit is not None and stored_unit is not None and unit != stored_unit:
        # CloudWatch: a unit that was never published has no data
        return stored_unit, Columns.empty(wanted)
    return stored_unit, found


def get_metric_data(ctx: Context, params: Params) -> Params:
    store = _store(ctx)
    _refuse(params, ("LabelOptions",), "labels are the query's Label or the metric name.")
    start, end = _range(params)
    queries = params["MetricDataQueries"]
    ids = [q["Id"] for q in queries]
    for query_id in ids:
        if not _ID.match(query_id):
            raise ValidationError(
                f"The Id {query_id[:255]!r} is invalid: it must start with a lowercase "
                "letter and hold only letters, digits and underscores."
            )
    if len(set(ids)) != len(ids):
        raise ValidationError("The Ids of MetricDataQueries must be unique.")
    for query in queries:
        if "Expression" in query:
            raise ValidationError(
                f"Expression (metric math, in query {query['Id']}) is not supported; "
                "query each metric with MetricStat."
            )
        _refuse(query, ("AccountId",), "cross-account queries are not served.")
        if "MetricStat" not in query:
            raise ValidationError(f"Query {query['Id']} needs a MetricStat.")
        if "Period" in query:
            raise ValidationError(
                f"Period belongs in the MetricStat of query {query['Id']} (a query-level "
                "Period goes with Expression)."
            )
    descending = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
    budget = params.get("MaxDatapoints", _DEFAULT_MAX_DATAPOINTS)
    if budget < 1:
        raise ValidationError("MaxDatapoints must be at least 1.")
    offsets = _offsets(params.get("NextToken"), ids)
    results, consumed, more = [], {}, False
    for query in queries:
        stat = query["MetricStat"]
        metric = stat["Metric"]
        statistic = stat["Stat"]
        _, found = _columns(
            store,
            _series(metric),
            start,
            end,
            stat["Period"],
            [statistic],
            stat.get("Unit"),
        )
        values = found.values[statistic]
        has = ~np.isnan(values)
        timestamps, numbers = found.timestamps[has], values[has]
        if descending:
            timestamps, numbers = timestamps[::-1], numbers[::-1]
        skip = offsets.get(query["Id"], 0)
        taken = max(min(len(timestamps) - skip, budget), 0)
        budget -= taken
        consumed[query["Id"]] = skip + taken
        complete = skip + taken >= len(timestamps)
        more = more or not complete
        if query.get("ReturnData", True):
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label", metric["MetricName"]),
                    "Timestamps": timestamps[skip : skip + taken].tolist(),
                    "Values": numbers[skip : skip + taken].tolist(),
                    "StatusCode": "Complete" if complete else "PartialData",
                }
            )
    answer: Params = {"MetricDataResults": results, "Messages": []}
    if more:
        answer["NextToken"] = base64.urlsafe_b64encode(orjson.dumps(consumed)).decode()
    return answer


def _offsets(token: str | None, ids: list[str]) -> dict[str, int]:
    if token is None:
        return {}
    try:
        offsets = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(offsets, dict) or set(offsets) != set(ids):
            raise ValueError("not this request's token")
        if not all(isinstance(v, int) and v >= 0 for v in offsets.values()):
            raise ValueError("bad offsets")
        return offsets
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise ValidationError(
            f"Invalid NextToken {token[:64]!r}: pass the token of the previous page of the "
            "same query."
        ) from None


def get_metric_statistics(ctx: Context, params: Params) -> Params:
    store = _store(ctx)
    plain = params.get("Statistics", [])
    extended = params.get("ExtendedStatistics", [])
    if not plain and not extended:
        raise ValidationError("Must specify either Statistics or ExtendedStatistics.")
    if len(plain) + len(extended) > 10:
        raise ValidationError("At most 10 statistics may be asked for in one request.")
    for name in extended:
        try:
            is_percentile = quantile(name) is not None
        except StatisticError as error:
            raise ValidationError(str(error)) from None
        if not is_percentile:
            raise ValidationError(
                f"ExtendedStatistics takes percentiles (p99, p99.9...); {name} belongs in "
                "Statistics."
            )
    start, end = _range(params)
    period = params["Period"]
    if period > 0 and math.ceil((end - start) / period) > _MAX_STATISTICS_POINTS:
        raise ValidationError(
            f"You have requested up to {math.ceil((end - start) / period):,} datapoints, "
            f"which exceeds the limit of {_MAX_STATISTICS_POINTS:,}. You may reduce the "
            "datapoints requested by increasing Period, or decreasing the time range."
        )
    unit, found = _columns(
        store, _series(params), start, end, period, [*plain, *extended], params.get("Unit")
    )
    listed = {name: column.tolist() for name, column in found.values.items()}
    datapoints = []
    for position, timestamp in enumerate(found.timestamps.tolist()):
        datapoint: Params = {"Timestamp": timestamp, "Unit": unit or "None"}
        for name in plain:
            value = listed[name][position]
            if not math.isnan(value):
                datapoint[name] = value
        percentiles = {
            name: listed[name][position]
            for name in extended
            if not math.isnan(listed[name][position])
        }
        if percentiles:
            datapoint["ExtendedStatistics"] = percentiles
        datapoints.append(datapoint)
    return {"Label": params["MetricName"], "Datapoints": datapoints}


def list_metrics(ctx: Context, params: Params) -> Params:
    store = _store(ctx)
    _refuse(params, ("IncludeLinkedAccounts", "OwningAccount"), "one account, no linking.")
    filters = [(f["Name"], f.get("Value")) for f in params.get("Dimensions", [])]
    active_since = None
    if "RecentlyActive" in params:  # botocore's enum: PT3H only
        active_since = time.time() - 3 * 3600
    found = []
    for series in store.all_series(params.get("Namespace"), params.get("MetricName")):
        dimensions = dict(series.key[2])
        if not all(
            name in dimensions and (value is None or dimensions[name] == value)
            for name, value in filters
        ):
            continue
        if active_since is not None and series.last_ts < active_since:
            continue
        namespace, name, pairs = series.key
        found.append(
            {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in pairs],
            }
        )
    offset = decode_token(params["NextToken"]) if "NextToken" in params else 0
    answer: Params = {"Metrics": found[offset : offset + _LIST_PAGE]}
    if offset + _LIST_PAGE < len(found):
        answer["NextToken"] = encode_token(offset + _LIST_PAGE)
    return answer


def put_metric_data(ctx: Context, params: Params) -> Params:
    store = _store(ctx)
    _refuse(
        params,
        ("EntityMetricData", "StrictEntityValidation"),
        "entities are not recorded; put plain MetricData.",
    )
    namespace = params["Namespace"]
    if namespace.startswith("AWS/"):
        raise ValidationError(
            f"The value {namespace[:255]} for parameter Namespace is invalid: namespaces "
            "starting with AWS/ are reserved."
        )
    data = params.get("MetricData")
    if not data:
        raise ValidationError("The parameter MetricData is required.")
    now = time.time()
    points = []
    for datum in data:
        name = datum["MetricName"]
        series = _series({**datum, "Namespace": namespace})
        stamp = _time(datum["Timestamp"]) if "Timestamp" in datum else now
        if not now - _PAST_S <= stamp <= now + _FUTURE_S:
            raise ValidationError(
                f"The timestamp of metric {name[:255]} is out of range: CloudWatch takes "
                "data from two weeks ago up to two hours ahead."
            )
        resolution = datum.get("StorageResolution", 60)
        if resolution != 60:
            raise ValidationError(
                f"StorageResolution {resolution} is not supported: metrics are kept at "
                "10 s and 1 min resolution; omit it or send 60."
            )
        points.append(Point(series, datum.get("Unit", "None"), stamp, _values(name, datum)))
    store.write(points)
    return {}


def _values(name: str, datum: Params) -> Distribution:
    given = [k for k in ("Value", "StatisticValues", "Values") if k in datum]
    if len(given) != 1:
        raise ValidationError(
            f"Metric {name[:255]}: give exactly one of Value, StatisticValues and Values."
        )
    made = Distribution()
    if "Value" in datum:
        made.observe(_finite(name, datum["Value"]))
    elif "Values" in datum:
        values = datum["Values"]
        counts = datum.get("Counts", [1.0] * len(values))
        if len(counts) != len(values):
            raise ValidationError(f"Metric {name[:255]}: Counts must match Values in length.")
        if not values:
            raise ValidationError(f"Metric {name[:255]}: Values is empty.")
        for value, count in zip(values, counts, strict=True):
            if _finite(name, count) <= 0:
                raise ValidationError(f"Metric {name[:255]}: every count must be > 0.")
            made.observe(_finite(name, value), count)
    else:
        stats = datum["StatisticValues"]
        count, total = _finite(name, stats["SampleCount"]), _finite(name, stats["Sum"])
        low, high = _finite(name, stats["Minimum"]), _finite(name, stats["Maximum"])
        if count <= 0 or low > high:
            raise ValidationError(
                f"Metric {name[:255]}: StatisticValues needs SampleCount > 0 and "
                "Minimum <= Maximum."
            )
        made.add_statistics(count, total, low, high)
    return made


def _finite(name: str, value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or abs(number) > 2.0**360:
        raise ValidationError(f"Metric {name[:255]}: the value {value!r} is out of range.")
    return number
