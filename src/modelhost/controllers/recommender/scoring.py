"""Scoring and costing: one traffic step's measurements as a point, a candidate's
InferenceBenchmark from its points (the highest throughput within the latency bound, and
what an hour and an inference cost there), and the job's recommendations ranked by cost."""

from __future__ import annotations

from typing import Any

from modelhost.catalog import get_instance_type, serverless_usd_per_gb_second
from modelhost.controllers.recommender.candidates import endpoint_configuration
from modelhost.loadgen import LoadResult

MAX_ERROR_FRACTION = 0.01  # a traffic step with more failed requests does not qualify


def point(
    traffic: dict[str, int],
    result: LoadResult,
    percentile: float,
    cpu: float,
    memory_percent: float,
) -> dict[str, Any]:
    requests = result.completed + result.error_count
    return {
        "users": traffic["end_users"],
        "seconds": traffic["seconds"],
        "throughput_rps": result.throughput,
        "invocations_per_minute": int(result.throughput * 60),
        "latency_ms": result.percentile_ms(percentile),
        "p50_ms": result.percentile_ms(50),
        "p99_ms": result.percentile_ms(99),
        "errors": result.error_count,
        "error_fraction": result.error_count / requests if requests else 1.0,
        "cpu_percent": round(cpu, 2),
        "memory_percent": round(memory_percent, 2),
    }


def benchmark(
    endpoint: str,
    candidate: dict[str, Any],
    plan: dict[str, Any],
    points: list[dict[str, Any]],
    setup_s: float,
    started: float,
    ended: float,
) -> dict[str, Any]:
    """InferenceBenchmark of one candidate: the highest-throughput traffic step within the
    latency bound (and with under 1% errors), or a FailureReason when none was."""
    bound = plan["latency"]
    fit = [
        p
        for p in points
        if p["error_fraction"] <= MAX_ERROR_FRACTION
        and p["throughput_rps"] > 0
        and (not bound or p["latency_ms"] <= bound["ms"])
    ]
    best = max(fit, key=lambda p: p["throughput_rps"]) if fit else None
    chosen = best or min(points, key=lambda p: p["latency_ms"])
    per_minute = max(chosen["invocations_per_minute"], 1)
    instance_type = get_instance_type(candidate.get("InstanceType", ""))
    if instance_type is not None:
        cost_per_hour = instance_type.usd_per_hour
        cost_per_inference = cost_per_hour / (per_minute * 60)
    else:
        # Serverless bills request duration x memory: an inference costs the GB-seconds
        # the router billed for it, and an hour costs an hour of inferences at this
        # throughput (so CostPerInference = CostPerHour / invocations per hour, as for an
        # instance).
        cost_per_inference = (
            chosen.get("gb_seconds_per_inference", 0.0) * serverless_usd_per_gb_second()
        )
        cost_per_hour = cost_per_inference * per_minute * 60
    metrics = {
        "CostPerHour": cost_per_hour,
        "CostPerInference": cost_per_inference,
        "MaxInvocations": chosen["invocations_per_minute"],
        "ModelLatency": max(1, round(chosen["latency_ms"])),
        "CpuUtilization": chosen["cpu_percent"],
        "MemoryUtilization": chosen["memory_percent"],
        "ModelSetupTime": max(1, round(setup_s)),
    }
    benchmark: dict[str, Any] = {
        "Metrics": metrics,
        "EndpointMetrics": {
            "MaxInvocations": metrics["MaxInvocations"],
            "ModelLatency": metrics["ModelLatency"],
        },
        "EndpointConfiguration": endpoint_configuration(endpoint, candidate),
        "ModelConfiguration": {},
        "InvocationStartTime": started,
        "InvocationEndTime": ended,
    }
    if best is None:
        label = f"{bound['label']} ≤ {bound['ms']} ms" if bound else "under 1% errors"
        benchmark["FailureReason"] = (
            f"no traffic step met {label}: at the lightest load "
            f"{chosen['latency_ms']:.2f} ms with {chosen['errors']} errors"
        )
    return benchmark


def rank(job: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every candidate that met the latency bound, cheapest per inference first (then per
    hour), numbered `<job>/<n>` as its RecommendationId."""
    recommendations = []
    for step in steps:
        measured = step.get("InferenceBenchmark", {})
        if step["Status"] == "COMPLETED" and "FailureReason" not in measured:
            recommendations.append(
                {
                    k: measured[k]
                    for k in (
                        "Metrics",
                        "EndpointConfiguration",
                        "ModelConfiguration",
                        "InvocationStartTime",
                        "InvocationEndTime",
                    )
                }
            )
    recommendations.sort(
        key=lambda r: (r["Metrics"]["CostPerInference"], r["Metrics"]["CostPerHour"])
    )
    for number, recommendation in enumerate(recommendations, 1):
        recommendation["RecommendationId"] = f"{job}/{number}"
    return recommendations
