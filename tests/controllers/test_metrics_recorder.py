"""The recorder on its own: what one flush turns the server's metrics into."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from modelhost import metrics
from modelhost.controllers import MetricsRecorder
from modelhost.history import MetricStore, retention, statistics
from modelhost.router import Deployment, Router, ServerlessPool


@pytest.fixture
def recorder(tmp_path: Path):
    async def make() -> MetricsRecorder:
        return MetricsRecorder(
            MetricStore(tmp_path / "m.db"), Router(5.0), 1.0, retention(3600, 7200), 2**30
        )

    made = asyncio.run(make())
    made.attach()
    yield made
    made.detach()
    made.store.close()


def _key(name: str, endpoint: str) -> tuple:
    return ("AWS/SageMaker", name, (("EndpointName", endpoint), ("VariantName", "v")))


def test_a_flush_records_counts_and_latencies(recorder: MetricsRecorder) -> None:
    endpoint = f"rec-{time.monotonic_ns()}"
    series = metrics.for_variant(endpoint, "v")  # made after attach: observed from the start
    for latency in (0.001, 0.002, 0.004):
        series.answered(latency, None)
        series.overhead(0.0001)
    metrics.INVOCATION_4XX.labels(endpoint, "v").inc(2)
    now = time.time()
    recorder.write(*recorder.collect(now), now)

    def stat(name: str, wanted: list[str]) -> dict[str, float]:
        _, points = statistics(
            recorder.store, _key(name, endpoint), now - 60, now + 60, 120, wanted
        )
        return points[0].values if points else {}

    assert stat("Invocations", ["Sum"]) == {"Sum": 3.0}
    assert stat("Invocation4XXErrors", ["Sum"]) == {"Sum": 2.0}
    assert stat("Invocation5XXErrors", ["Sum"]) == {"Sum": 0.0}
    latency = stat("ModelLatency", ["SampleCount", "Minimum", "Maximum", "p50"])
    assert latency["SampleCount"] == 3
    assert (latency["Minimum"], latency["Maximum"]) == pytest.approx((1000.0, 4000.0))
    assert latency["p50"] == pytest.approx(2000.0, rel=0.02)
    assert stat("OverheadLatency", ["Average"])["Average"] == pytest.approx(100.0)
    # The next flush holds only what came after this one.
    series.answered(0.003, None)
    later, latencies = recorder.collect(now + 1)
    names = {p.series[1]: p.values for p in later if p.series[2][0][1] == endpoint}
    assert names["Invocations"].total == 1.0
    assert [values for key, values in latencies if key[2][0][1] == endpoint] == [[0.003]]
    assert "Invocation4XXErrors" in names and names["Invocation4XXErrors"].total == 0.0


def test_detached_series_observe_nothing(recorder: MetricsRecorder) -> None:
    series = metrics.for_variant(f"rec-{time.monotonic_ns()}", "v")
    recorder.detach()
    assert series.history_model is None and series.history_overhead is None
    series.answered(0.001, None)  # the Prometheus histogram alone


def test_a_serverless_variant_records_its_peak_concurrency(recorder: MetricsRecorder) -> None:
    """Three requests in flight at once, all gone by the flush: the flush still holds 3,
    and the utilisation is 3 over MaxConcurrency; the next flush starts from those in
    flight then."""
    endpoint = f"rec-{time.monotonic_ns()}"
    pool = ServerlessPool(name="v", weight=1.0, endpoint=endpoint, max_concurrency=4)
    recorder.router.deployments[endpoint] = Deployment(endpoint, 1, {"v": pool})
    for _ in range(3):
        pool.admit()
    for _ in range(2):
        pool.leave(0.0)

    def values(points: list) -> dict[str, float]:
        found = {}
        for point in points:
            if point.series[2] == (("EndpointName", endpoint), ("VariantName", "v")):
                found[f"{point.series[0]}:{point.series[1]}"] = point.values.maximum
        return found

    first = values(recorder.collect(time.time())[0])
    assert first["Modelhost/Endpoints:ConcurrentExecutions"] == 3.0
    assert first["AWS/SageMaker:ServerlessConcurrentExecutionsUtilization"] == 0.75
    later = values(recorder.collect(time.time())[0])
    assert later["Modelhost/Endpoints:ConcurrentExecutions"] == 1.0  # one still in flight
    pool.leave(0.0)
    last = values(recorder.collect(time.time())[0])
    assert last["AWS/SageMaker:ServerlessConcurrentExecutionsUtilization"] == 0.25
    del recorder.router.deployments[endpoint]
