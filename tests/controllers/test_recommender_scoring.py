"""Recommender scoring, costing, ranking and payload sampling on their own, from points
and objects built by hand (no server, no load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.catalog import get_instance_type, serverless_usd_per_gb_second
from modelhost.controllers.recommender import scoring
from modelhost.controllers.recommender.payloads import sample_payloads
from modelhost.storage import FsspecObjectStore
from tests.support.models import model_tarball

_BOUND = {"label": "P95", "ms": 100, "percentile": 95.0}


def _point(rps: float, latency_ms: float, errors: int = 0, **extra: float) -> dict:
    return {
        "users": 1,
        "seconds": 10,
        "throughput_rps": rps,
        "invocations_per_minute": int(rps * 60),
        "latency_ms": latency_ms,
        "p50_ms": latency_ms,
        "p99_ms": latency_ms,
        "errors": errors,
        "error_fraction": errors / max(rps * 10 + errors, 1),
        "cpu_percent": 50.0,
        "memory_percent": 10.0,
        **extra,
    }


def _benchmark(candidate: dict, points: list[dict], bound: dict | None = _BOUND) -> dict:
    return scoring.benchmark(
        "ep", candidate, {"latency": bound}, points, setup_s=3.2, started=1.0, ended=2.0
    )


def test_the_fastest_step_within_the_bound_is_chosen_and_costed_per_hour() -> None:
    points = [_point(100, 20), _point(180, 60), _point(250, 140)]  # the last is too slow
    result = _benchmark({"InstanceType": "ml.c5.large"}, points)
    price = get_instance_type("ml.c5.large").usd_per_hour
    assert "FailureReason" not in result
    assert result["Metrics"]["MaxInvocations"] == 180 * 60
    assert result["Metrics"]["ModelLatency"] == 60
    assert result["Metrics"]["CostPerHour"] == price
    assert result["Metrics"]["CostPerInference"] == pytest.approx(price / (180 * 3600))
    assert result["Metrics"]["ModelSetupTime"] == 3
    assert result["EndpointConfiguration"] == {
        "EndpointName": "ep",
        "VariantName": "AllTraffic",
        "InstanceType": "ml.c5.large",
    }


def test_a_step_with_over_one_percent_errors_does_not_qualify() -> None:
    points = [_point(100, 20), _point(300, 30, errors=500)]
    assert (
        _benchmark({"InstanceType": "ml.c5.large"}, points)["Metrics"]["MaxInvocations"] == 100 * 60
    )


def test_no_step_within_the_bound_fails_the_candidate_at_its_lightest_load() -> None:
    result = _benchmark({"InstanceType": "ml.c5.large"}, [_point(50, 300), _point(60, 250)])
    assert result["FailureReason"] == (
        "no traffic step met P95 ≤ 100 ms: at the lightest load 250.00 ms with 0 errors"
    )


def test_serverless_costs_the_billed_gb_seconds() -> None:
    candidate = {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
    result = _benchmark(candidate, [_point(10, 30, gb_seconds_per_inference=0.5)])
    per_inference = 0.5 * serverless_usd_per_gb_second()
    assert result["Metrics"]["CostPerInference"] == pytest.approx(per_inference)
    assert result["Metrics"]["CostPerHour"] == pytest.approx(per_inference * 10 * 3600)


def _step(status: str, per_inference: float, per_hour: float, failed: bool = False) -> dict:
    benchmark = {
        "Metrics": {"CostPerInference": per_inference, "CostPerHour": per_hour},
        "EndpointConfiguration": {"InstanceType": f"{per_inference}/{per_hour}"},
        "ModelConfiguration": {},
        "InvocationStartTime": 1,
        "InvocationEndTime": 2,
    }
    if failed:
        benchmark["FailureReason"] = "too slow"
    return {"Status": status, "InferenceBenchmark": benchmark}


def test_rank_orders_qualifying_candidates_by_cost_and_numbers_them() -> None:
    steps = [
        _step("COMPLETED", 2.0, 1.0),
        _step("COMPLETED", 1.0, 5.0),
        _step("COMPLETED", 1.0, 3.0),
        _step("COMPLETED", 0.1, 0.1, failed=True),
        _step("FAILED", 0.01, 0.01),
    ]
    ranked = scoring.rank("job", steps)
    assert [(r["Metrics"]["CostPerInference"], r["Metrics"]["CostPerHour"]) for r in ranked] == [
        (1.0, 3.0),
        (1.0, 5.0),
        (2.0, 1.0),
    ]
    assert [r["RecommendationId"] for r in ranked] == ["job/1", "job/2", "job/3"]


def test_payloads_come_from_a_tarball_a_prefix_or_one_object(tmp_path: Path) -> None:
    objects = FsspecObjectStore(tmp_path / "objects")
    objects.put_bytes("s3://p/payloads.tar.gz", model_tarball({"a.json": b"[1]", "b.json": b"[2]"}))
    objects.put_bytes("s3://p/many/1.json", b"[3]")
    objects.put_bytes("s3://p/many/2.json", b"[4]")
    objects.put_bytes("s3://p/one.json", b"[5]")
    assert sorted(sample_payloads(objects, "s3://p/payloads.tar.gz")) == [b"[1]", b"[2]"]
    assert sorted(sample_payloads(objects, "s3://p/many/")) == [b"[3]", b"[4]"]
    assert sample_payloads(objects, "s3://p/one.json") == (b"[5]",)
    with pytest.raises(ValueError, match="holds no payloads"):
        sample_payloads(objects, "s3://p/nothing/")
