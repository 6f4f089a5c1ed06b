"""Autoscaling under a 4x step of open-loop load: how soon instances are added after the
metric crosses its target, and when p99 latency is back under its target.

Why this shape:
- Open loop (`modelhost.loadgen`): requests leave at their scheduled times whether or not
  earlier ones have answered, and latency counts from that time, so an overloaded endpoint
  shows as rising latency, not as a politely slower client (no coordinated omission).
- The model sleeps for a fixed service time with one worker per instance, so each instance
  has a known capacity and adding instances adds capacity even on a 2-core machine (a
  CPU-bound model would only share the same two cores). It stands for an I/O- or
  accelerator-bound model.
- The step goes from 0.75x to 3x one instance's capacity: one instance is overloaded, its
  queue (and p99) grows until the autoscaler adds instances.
- Target tracking on SageMaker's predefined InvocationsPerInstance, evaluated every
  `--interval` seconds over a `--window`-second window (the server's
  MODELHOST_AUTOSCALING_INTERVAL / _WINDOW).
- The instance counts come from DescribeEndpoint, polled twice a second; the metric the
  policy sees is recomputed from the load generator's per-second timeline the way the
  server computes it (answers in the window per minute, divided by serving instances).

Usage:
    python benchmarks/autoscaling_step.py [--base-rate 15] [--step 4] [--service-ms 20]
        [--base-s 30] [--high-s 90] [--after-s 60] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    BENCHMARKS_DIR,
    machine_facts,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_sleep_model
from tests.support.server import ServerProcess

from modelhost.loadgen import LoadResult, LoadSpec, Phase, run_in_subprocess

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALE_OUT_TARGET_S = 30.0  # the target: instances added within 30 s of the crossing
POLL_S = 0.5


@dataclass
class Poll:
    t: float  # seconds since the load started
    current: int
    desired: int


class Poller(threading.Thread):
    """DescribeEndpoint and the server's invocation counter twice a second, in the
    benchmark's clock."""

    def __init__(self, server: ServerProcess, sagemaker: Any, name: str) -> None:
        super().__init__(daemon=True)
        self.server, self.sagemaker, self.name = server, sagemaker, name
        # (monotonic time, current, desired, invocations answered so far)
        self.polls: list[tuple[float, int, int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        while not self.stop.is_set():
            variant = self.sagemaker.describe_endpoint(EndpointName=self.name)[
                "ProductionVariants"
            ][0]
            answered = sum(
                sample.value
                for family in text_string_to_metric_families(self.server.metrics_text())
                for sample in family.samples
                if sample.name == "modelhost_invocations_total"
                and sample.labels.get("endpoint") == self.name
            )
            self.polls.append(
                (
                    time.monotonic(),
                    variant["CurrentInstanceCount"],
                    variant["DesiredInstanceCount"],
                    answered,
                )
            )
            self.stop.wait(POLL_S)


def load_clock_offset(result: LoadResult, polls: list[tuple[float, int, int, float]]) -> float:
    """When, in the benchmark's clock, the generator's second 0 began. The generator runs
    in its own process and keeps its own clock; each poll saw how many invocations the
    server had answered, and the timeline says in which second the generator had seen that
    many answers: the median of the differences lines the two clocks up."""
    cumulative = [0.0]
    for second in result.timeline:
        cumulative.append(cumulative[-1] + second.completed)
    offsets = []
    for at, _, _, answered in polls:
        if not 0 < answered < cumulative[-1]:
            continue
        second = next(i for i, total in enumerate(cumulative) if total >= answered) - 1
        within = (answered - cumulative[second]) / max(
            cumulative[second + 1] - cumulative[second], 1.0
        )
        offsets.append(at - (second + within))
    offsets.sort()
    return offsets[len(offsets) // 2]


def first(items: list[Any], condition: Any) -> Any | None:
    return next((item for item in items if condition(item)), None)


def analyse(result: LoadResult, polls: list[Poll], args: argparse.Namespace) -> dict[str, Any]:
    step_at, step_end = args.base_s, args.base_s + args.high_s
    timeline = result.timeline

    def instances_at(t: float) -> int:
        seen = [p.current for p in polls if p.t <= t]
        return seen[-1] if seen else 1

    # InvocationsPerInstance as the server sees it: answers in the window, per minute,
    # divided by the instances serving.
    metric = []
    for second in timeline:
        window = [
            s.completed for s in timeline if second.second - args.window < s.second <= second.second
        ]
        per_minute = sum(window) / min(args.window, second.second + 1) * 60
        metric.append((second.second + 1, per_minute / max(instances_at(second.second), 1)))
    crossing = first(metric, lambda m: m[0] >= step_at and m[1] > args.target)
    decided = first(polls, lambda p: p.t >= step_at and p.desired > 1)
    serving = first(polls, lambda p: p.t >= step_at and p.current > 1)
    high = [s for s in timeline if step_at <= s.second < step_end]
    # Back under the target: the first second after the step's first overloaded one;
    # later seconds over the target are counted apart (an instance starting takes CPU
    # from the others on a small machine).
    first_over = first(high, lambda s: s.p99_ms > args.p99_target_ms)
    back = first(
        high,
        lambda s: (
            first_over is not None
            and s.second > first_over.second
            and s.p99_ms <= args.p99_target_ms
        ),
    )
    relapses = [
        s.second
        for s in high
        if back is not None and s.second > back.second and s.p99_ms > args.p99_target_ms
    ]
    base = [s for s in timeline if s.second < step_at and s.completed]
    tail = [s for s in high if s.second >= step_end - 30 and s.completed]
    return {
        "crossing_s": crossing[0] if crossing else None,
        "decided_s": decided.t if decided else None,
        "serving_s": serving.t if serving else None,
        "back_under_s": (back.second if back else None) if first_over else step_at,
        "seconds_over_after": len(relapses),
        "max_instances": max((p.current for p in polls), default=0),
        "final_instances": polls[-1].current if polls else 0,
        "base_p99_ms": max((s.p99_ms for s in base), default=0.0),
        "peak_p99_ms": max((s.p99_ms for s in high), default=0.0),
        "tail_p99_ms": max((s.p99_ms for s in tail), default=0.0),
        "metric": metric,
    }


def plot(
    path: Path,
    result: LoadResult,
    polls: list[Poll],
    figures: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [s.second + 1 for s in result.timeline]
    fig, (ax_n, ax_rate, ax_p99) = plt.subplots(3, 1, sharex=True, figsize=(10, 8))
    ax_n.step(
        [p.t for p in polls], [p.desired for p in polls], where="post", label="DesiredInstanceCount"
    )
    ax_n.step(
        [p.t for p in polls], [p.current for p in polls], where="post", label="CurrentInstanceCount"
    )
    ax_n.set_ylabel("instances")
    ax_n.legend(loc="upper right")
    ax_rate.plot(seconds, [s.sent for s in result.timeline], label="sent / s")
    ax_rate.plot(seconds, [s.completed for s in result.timeline], label="answered / s")
    ax_rate.set_ylabel("requests / s")
    ax_rate.legend(loc="upper right")
    ax_p99.plot(seconds, [max(s.p99_ms, 0.1) for s in result.timeline], label="p99 per second")
    ax_p99.axhline(args.p99_target_ms, color="red", linestyle=":", label="p99 target")
    ax_p99.set_yscale("log")
    ax_p99.set_ylabel("p99 latency (ms)")
    ax_p99.set_xlabel("seconds since the load started")
    ax_p99.legend(loc="upper right")
    for axis in (ax_n, ax_rate, ax_p99):
        axis.axvline(args.base_s, color="grey", linestyle="--")
        axis.axvline(args.base_s + args.high_s, color="grey", linestyle="--")
        if figures["crossing_s"] is not None:
            axis.axvline(figures["crossing_s"], color="orange", linestyle=":")
    fig.suptitle(
        f"Target tracking on InvocationsPerInstance (target {args.target:g}/min), "
        f"{args.base_rate:g} -> {args.base_rate * args.step:g} req/s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def render(
    facts: dict[str, str],
    args: argparse.Namespace,
    result: LoadResult,
    figures: dict[str, Any],
    activities: list[dict[str, Any]],
    png: Path,
) -> str:
    crossing, decided = figures["crossing_s"], figures["decided_s"]
    rest = args.base_s + args.high_s - (figures["back_under_s"] or 0)
    reaction = None if crossing is None or decided is None else decided - crossing
    summary = result.summary()
    lines = ["# Autoscaling under a 4x load step", "", "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    lines += [
        "",
        f"Load: open loop, {args.base_rate:g} req/s for {args.base_s:g} s, "
        f"{args.base_rate * args.step:g} req/s for {args.high_s:g} s, {args.base_rate:g} req/s "
        f"for {args.after_s:g} s. Model: {args.service_ms:g} ms service time, one request at "
        f"a time per instance ({1000 / args.service_ms:.0f} req/s per instance). Policy: "
        f"InvocationsPerInstance target {args.target:g}/min, min 1, max {args.max_instances}, "
        f"cooldowns out {args.scale_out_cooldown} s / in {args.scale_in_cooldown} s. "
        f"Server: evaluation every {args.interval:g} s over a {args.window:g} s window.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| step at | {args.base_s:.0f} s | |",
        f"| windowed InvocationsPerInstance crosses the target | {_s(crossing)} | |",
        f"| desired count raised | {_s(decided)} | |",
        f"| reaction: raised after the crossing | {_s(reaction)} | ≤ {SCALE_OUT_TARGET_S:.0f} s |",
        f"| first added instance serving | {_s(figures['serving_s'])} | |",
        f"| p99 per second back under {args.p99_target_ms:g} ms | "
        f"{_s(figures['back_under_s'])} | within the step |",
        f"| seconds of the step over {args.p99_target_ms:g} ms after that | "
        f"{figures['seconds_over_after']} of {rest:.0f} | |",
        f"| p99 per second before the step (worst) | {figures['base_p99_ms']:.1f} ms | |",
        f"| p99 per second during the step (worst) | {figures['peak_p99_ms']:.1f} ms | |",
        f"| p99 per second, last 30 s of the step (worst) | {figures['tail_p99_ms']:.1f} ms | "
        f"< {args.p99_target_ms:g} ms |",
        f"| instances at most / at the end | {figures['max_instances']} / "
        f"{figures['final_instances']} | |",
        f"| requests sent / answered / errors | {summary['sent']} / {summary['completed']} / "
        f"{summary['errors']} {summary['errors_by_code'] or ''} | 0 errors |",
        "",
        f"Plot: `{png}`",
        "",
        "Scaling activities (newest first):",
        "",
    ]
    lines += [f"- {a['StatusCode']}: {a['Description']} {a['Cause']}" for a in activities]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-rate", type=float, default=15.0, help="req/s before the step")
    parser.add_argument("--step", type=float, default=4.0, help="load multiplier")
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--base-s", type=float, default=30.0)
    parser.add_argument("--high-s", type=float, default=90.0)
    parser.add_argument("--after-s", type=float, default=60.0)
    parser.add_argument(
        "--target",
        type=float,
        default=1200.0,
        help="InvocationsPerInstance target (per instance per minute)",
    )
    parser.add_argument("--p99-target-ms", type=float, default=100.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--scale-out-cooldown", type=int, default=15)
    parser.add_argument("--scale-in-cooldown", type=int, default=30)
    parser.add_argument("--max-instances", type=int, default=6)
    parser.add_argument("--out", type=Path, default=BENCHMARKS_DIR / "results")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401  (checked now, not after minutes of load)
    except ImportError:
        parser.error('the plot needs matplotlib: pip install -e ".[plot]"')

    with sigterm_as_interrupt(), scratch_dir(args.keep) as scratch:
        server = ServerProcess(
            scratch / "data",
            env={
                "MODELHOST_AUTOSCALING_INTERVAL": str(args.interval),
                "MODELHOST_AUTOSCALING_WINDOW": str(args.window),
            },
        )
        server.start()
        sagemaker = server.client("sagemaker")
        name = None
        try:
            model_url = put_sleep_model(server.data_dir, args.service_ms / 1000)
            name = deploy(sagemaker, model_url, image="modelhost/python")
            figures, result, polls, activities = _measure(server, sagemaker, name, args)
        finally:
            if name is not None:
                undeploy(sagemaker, name)
            server.stop()
    png = args.out / "autoscaling_step.png"
    plot(png, result, polls, figures, args)
    report = render(
        machine_facts("modelhost.loadgen (open loop, own process)"),
        args,
        result,
        figures,
        activities,
        png,
    )
    (args.out / "autoscaling_step.md").write_text(report)
    (args.out / "autoscaling_step.json").write_text(
        json.dumps(
            {
                "timeline": [
                    {k: v for k, v in s.to_json().items() if k != "histogram"}
                    for s in result.timeline
                ],
                "polls": [p.__dict__ for p in polls],
                "metric": figures["metric"],
                "activities": activities,
            },
            default=str,
            indent=1,
        )
    )
    print(report)
    return 0


def _measure(
    server: ServerProcess, sagemaker: Any, name: str, args: argparse.Namespace
) -> tuple[dict[str, Any], LoadResult, list[Poll], list[dict[str, Any]]]:
    aas = server.client("application-autoscaling")
    resource = f"endpoint/{name}/variant/AllTraffic"
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=args.max_instances,
    )
    aas.put_scaling_policy(
        PolicyName="invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": args.target,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleOutCooldown": args.scale_out_cooldown,
            "ScaleInCooldown": args.scale_in_cooldown,
        },
    )
    high = args.base_rate * args.step
    spec = LoadSpec(
        url=f"{server.url}/endpoints/{name}/invocations",
        phases=(
            Phase(args.base_s, rate=args.base_rate),
            Phase(args.high_s, rate=high),
            Phase(args.after_s, rate=args.base_rate),
        ),
        payloads=(b"{}",),
        content_type="application/json",
        timeout_s=30.0,
        max_connections=512,
    )
    poller = Poller(server, sagemaker, name)
    poller.start()
    try:
        result = asyncio.run(run_in_subprocess(spec))
    finally:
        poller.stop.set()
        poller.join()
    load_start = load_clock_offset(result, poller.polls)
    polls = [Poll(t - load_start, current, desired) for t, current, desired, _ in poller.polls]
    activities = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingActivities"
    ]
    figures = analyse(result, polls, args)
    return figures, result, polls, activities


if __name__ == "__main__":
    raise SystemExit(main())
