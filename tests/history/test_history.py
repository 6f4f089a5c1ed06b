"""The metric history on its own: sketches, the SQLite store's rollups, retention and
size bound, and the statistics query."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from modelhost.history import (
    Distribution,
    MetricStore,
    Point,
    StatisticError,
    resolution_for,
    retention,
    statistics,
)
from modelhost.history.distribution import percentiles

SERIES = ("AWS/SageMaker", "ModelLatency", (("EndpointName", "e"), ("VariantName", "v")))
T0 = 1_699_999_980  # a multiple of 60


def _quantiles(made: Distribution, quantiles: list[float]) -> list[float]:
    """One period's percentiles, clamped as the query clamps them."""
    (row,) = percentiles(np.zeros(1, np.int64), [made.sketch()], 1, quantiles).tolist()
    return [min(max(v, made.minimum), made.maximum) for v in row]


def _dist(values: list[float]) -> Distribution:
    made = Distribution()
    for value in values:
        made.observe(value)
    return made


def test_percentiles_are_within_two_percent_and_the_range_seen() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(6, 1) for _ in range(10_000)]
    made = _dist(values)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[int(q * len(ordered)) - 1]
        (estimate,) = _quantiles(made, [q])
        assert abs(estimate - exact) / exact < 0.03
    (top,) = _quantiles(made, [1.0])
    assert top == max(values)


def test_negative_zero_and_positive_values_rank_in_order() -> None:
    made = _dist([-5.0, -1.0, 0.0, 0.0, 2.0, 10.0])
    p0, p50, p100 = _quantiles(made, [0.01, 0.5, 1.0])
    assert p0 == pytest.approx(-5.0, rel=0.02)
    assert p50 == 0.0
    assert p100 == 10.0


def test_seconds_are_kept_in_microseconds_in_the_same_buckets() -> None:
    seconds = [0.0015, 0.0002, 0.0031, 0.0015, 0.0]
    made = Distribution.of_seconds(seconds)
    one_by_one = _dist([s * 1e6 for s in seconds])
    assert made.count == 5 and made.total == pytest.approx(one_by_one.total)
    assert (made.minimum, made.maximum) == (0.0, pytest.approx(3100.0))
    assert made.buckets == one_by_one.buckets


def test_ten_second_points_roll_up_into_minutes(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    # 12 slots of 10 s (two minutes), slot i holds values i+1 repeated (i+1) times
    store.write(
        Point(SERIES, "Microseconds", T0 + 10 * i + 5, _dist([i + 1.0] * (i + 1)))
        for i in range(12)
    )
    unit, points = statistics(store, SERIES, T0, T0 + 120, 60, ["SampleCount", "Sum", "Maximum"])
    assert unit == "Microseconds"
    assert [p.timestamp for p in points] == [T0, T0 + 60]
    assert points[0].values == {"SampleCount": 21.0, "Sum": 91.0, "Maximum": 6.0}
    assert points[1].values["SampleCount"] == sum(range(7, 13))
    _, fine = statistics(store, SERIES, T0, T0 + 120, 10, ["SampleCount", "Minimum", "p50"])
    assert len(fine) == 12
    assert fine[3].values == {"SampleCount": 4.0, "Minimum": 4.0, "p50": 4.0}
    _, whole = statistics(store, SERIES, T0, T0 + 120, 120, ["Average", "p99"])
    assert whole[0].values["Average"] == pytest.approx(sum((i + 1) ** 2 for i in range(12)) / 78)
    assert 11.0 <= whole[0].values["p99"] <= 12.0


def test_percentiles_of_many_periods_in_one_pass() -> None:
    """Periods with no values are NaN; each period ranks its own values only."""
    owners = np.array([0, 2, 0])
    sketches = [_dist([1.0, 2.0, 3.0]).sketch(), _dist([100.0]).sketch(), _dist([4.0]).sketch()]
    table = percentiles(owners, sketches, 3, [0.5, 1.0])
    assert table[0].tolist() == pytest.approx([2.0, 4.0], rel=0.02)
    assert all(v != v for v in table[1])  # NaN
    assert table[2].tolist() == pytest.approx([100.0, 100.0], rel=0.02)


def test_writes_into_the_same_slot_merge(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    store.write([Point(SERIES, "None", T0 + 1, _dist([1.0, 2.0]))])
    store.write([Point(SERIES, "None", T0 + 2, _dist([3.0]))])
    _, points = statistics(store, SERIES, T0, T0 + 10, 10, ["SampleCount", "Sum", "p100"])
    assert points[0].values == {"SampleCount": 3.0, "Sum": 6.0, "p100": 3.0}


def test_retention_drops_old_points_per_resolution(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    store.write(Point(SERIES, "None", T0 + 10 * i, _dist([1.0])) for i in range(360))
    now = T0 + 3600
    store.prune(now, retention(600, 1800), 1024**3)
    _, fine = statistics(store, SERIES, T0, now, 10, ["SampleCount"])
    _, coarse = statistics(store, SERIES, T0, now, 60, ["SampleCount"])
    assert fine[0].timestamp == now - 600 and len(fine) == 60
    assert coarse[0].timestamp == now - 1800 and len(coarse) == 30


def test_size_bound_drops_the_oldest_points(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    values = _dist([float(v) for v in range(1, 200)])  # a wide sketch: a big row
    for day_slot in range(0, 8640, 720):
        store.write(Point(SERIES, "None", T0 + 10 * (day_slot + i), values) for i in range(720))
    before = store.used_bytes()
    bound = before // 3
    store.prune(T0 + 86400, retention(10 * 86400, 10 * 86400), bound)
    assert store.used_bytes() <= bound
    _, fine = statistics(store, SERIES, T0, T0 + 86400, 10, ["SampleCount"])
    # what is left is the newest
    assert fine and fine[-1].timestamp == T0 + 86400 - 10
    assert fine[0].timestamp > T0 + 3600


def test_unknown_series_has_no_unit_and_no_data(tmp_path: Path) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    assert statistics(store, SERIES, T0, T0 + 60, 60, ["Sum"]) == (None, [])


@pytest.mark.parametrize("statistic", ["tm99", "IQM", "p101", "PR(1:2)", "average"])
def test_unsupported_statistics_are_refused_by_name(tmp_path: Path, statistic: str) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    with pytest.raises(StatisticError, match="not supported"):
        statistics(store, SERIES, T0, T0 + 60, 60, [statistic])


@pytest.mark.parametrize("period", [1, 5, 15, 0])
def test_periods_finer_than_ten_seconds_are_refused(tmp_path: Path, period: int) -> None:
    store = MetricStore(tmp_path / "metrics.db")
    with pytest.raises(StatisticError, match="multiple of 10"):
        statistics(store, SERIES, T0, T0 + 60, period, ["Sum"])


def test_wide_sketches_take_the_sorting_path_and_agree() -> None:
    """Values from -1e9 to 1e9 span too many buckets for the dense grid."""
    rng = random.Random(3)
    values = [rng.uniform(-1e9, 1e9) for _ in range(2000)] + [1e-6, -1e-6]
    wide = _dist(values)
    table = percentiles(np.arange(200), [wide.sketch()] * 200, 200, [0.25, 0.75])
    ordered = sorted(values)
    assert table[17][0] == pytest.approx(ordered[499], rel=0.03)
    assert table[199][1] == pytest.approx(ordered[1499], rel=0.03)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MODELHOST_METRICS_FLUSH_INTERVAL", "30", "MODELHOST_METRICS_FLUSH_INTERVAL"),
        ("MODELHOST_METRICS_HIGH_RES_RETENTION", "9999999999", "HIGH_RES_RETENTION"),
        ("MODELHOST_METRICS_MAX_MB", "0.5", "MODELHOST_METRICS_MAX_MB"),
    ],
)
def test_history_settings_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    from modelhost.config import Settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=named):
        Settings(data_dir=tmp_path)


def test_a_period_reads_the_coarsest_rollup_that_divides_it(tmp_path: Path) -> None:
    assert [resolution_for(p) for p in (10, 30, 60, 120, 300, 900, 3600, 86400)] == [
        10,
        10,
        60,
        60,
        300,
        300,
        3600,
        3600,
    ]
    store = MetricStore(tmp_path / "metrics.db")
    rng = random.Random(5)
    store.write(
        Point(SERIES, "None", T0 + 10 * i, _dist([rng.uniform(1, 100) for _ in range(5)]))
        for i in range(2 * 360)
    )
    # The same two hours by minutes, 5 minutes and hours: the rollups agree exactly.
    wanted = ["SampleCount", "Sum", "Minimum", "Maximum", "p90"]
    by_minute = [statistics(store, SERIES, T0, T0 + 7200, p, wanted)[1] for p in (60, 300, 3600)]
    for points in by_minute:
        assert sum(p.values["SampleCount"] for p in points) == 5 * 720
        assert sum(p.values["Sum"] for p in points) == pytest.approx(
            sum(q.values["Sum"] for q in by_minute[0])
        )
    _, hours = statistics(store, SERIES, T0, T0 + 7200, 86400, wanted)
    (whole,) = hours
    assert whole.values["Minimum"] == min(p.values["Minimum"] for p in by_minute[0])
    assert 80 < whole.values["p90"] < 100


def test_a_century_at_ten_seconds_costs_what_its_data_costs(tmp_path: Path) -> None:
    """Percentile work follows the periods that hold data, not the range asked for."""
    store = MetricStore(tmp_path / "metrics.db")
    store.write([Point(SERIES, "None", T0 + 5, _dist([1.0, 2.0, 3.0]))])
    century = 100 * 365 * 86400
    _, points = statistics(store, SERIES, T0 - century, T0 + century, 10, ["p50", "Sum"])
    (point,) = points
    assert point.timestamp == T0 and point.values["Sum"] == 6.0
    assert point.values["p50"] == pytest.approx(2.0, rel=0.02)


def test_a_day_by_five_minutes_is_its_ten_second_points_merged(tmp_path: Path) -> None:
    """Period=300 reads the 5-minute rollups: over a day they answer exactly what the
    10 s points they cover merge to, periods counted from StartTime rounded down."""
    store = MetricStore(tmp_path / "metrics.db")
    base = T0 // 3600 * 3600  # on the 5-minute grid
    rng = random.Random(11)
    slots = [
        _dist([rng.lognormvariate(6.7, 0.5) for _ in range(rng.randint(1, 6))]) for _ in range(8640)
    ]
    store.write(Point(SERIES, "Microseconds", base + 10 * i + 3, d) for i, d in enumerate(slots))
    start, end = base + 7, base + 86400  # StartTime off the 5-minute grid
    wanted = ["SampleCount", "Sum", "Minimum", "Maximum", "Average", "p99", "p50"]
    _, fine = statistics(store, SERIES, start, end, 10, ["SampleCount", "Sum"])
    _, coarse = statistics(store, SERIES, start, end, 300, wanted)
    assert len(fine) == 8640 and len(coarse) == 288
    assert [p.timestamp for p in coarse] == [base + 300 * i for i in range(288)]
    for index, point in enumerate(coarse):
        covered = slots[30 * index : 30 * index + 30]
        merged = Distribution()
        for made in covered:
            merged.merge(made)
        assert point.values["SampleCount"] == merged.count
        assert point.values["Sum"] == pytest.approx(merged.total, rel=1e-12)
        assert (point.values["Minimum"], point.values["Maximum"]) == (
            merged.minimum,
            merged.maximum,
        )
        assert point.values["Average"] == pytest.approx(merged.total / merged.count, rel=1e-12)
        assert [point.values["p99"], point.values["p50"]] == _quantiles(merged, [0.99, 0.5])
        # ... and what the query reads at Period=10 (the 10 s points) adds up to it
        tens = fine[30 * index : 30 * index + 30]
        assert {p.timestamp // 300 * 300 for p in tens} == {point.timestamp}
        assert point.values["SampleCount"] == sum(p.values["SampleCount"] for p in tens)
        assert point.values["Sum"] == pytest.approx(sum(p.values["Sum"] for p in tens))


def test_reads_in_a_snapshot_see_one_version_of_the_file(tmp_path: Path) -> None:
    """A query's numbers and its sketches come from one version: a write landing between
    the two reads is not half seen."""
    store = MetricStore(tmp_path / "metrics.db")
    store.write([Point(SERIES, "None", T0 + 5, _dist([1.0]))])
    found = store.find(SERIES)
    assert found is not None
    with store.snapshot():
        before = store.aggregates(found.id, 10, T0, T0 + 60, 10)
        store.write([Point(SERIES, "None", T0 + 15, _dist([2.0]))])
        owners, sketches = store.sketches(found.id, 10, T0, T0 + 60, 10)
        assert before.starts.tolist() == [T0] and owners.tolist() == [0] and len(sketches) == 1
    owners, _ = store.sketches(found.id, 10, T0, T0 + 60, 10)
    assert owners.tolist() == [0, 1]
