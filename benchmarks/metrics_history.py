"""What recording the CloudWatch metric history costs, and how fast it answers.

1. Real-time overhead with the history on vs off: two servers on one machine, one with
   MODELHOST_METRICS_HISTORY=0, each serving the same iris model on one instance; wrk
   (or modelhost.loadgen) runs against each in turn, the order alternating each round,
   and the median over rounds is reported with the server's CPU per request (the most
   sensitive figure for a cost added per request). Target: <= 0.02 ms added at p50.
2. GetMetricData over a day of 10 s points for 20 endpoints: a data dir's metrics.db is
   seeded directly (Invocations and ModelLatency of 20 endpoints, one point per 10 s for
   24 h, with a latency sketch like live traffic leaves), then a server answers boto3's
   GetMetricData (one query per endpoint) repeatedly. Target: p50 <= 50 ms.

Usage:
    python benchmarks/metrics_history.py [--duration S] [--rounds N] [--connections 1,8]
        [--calls N] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import random
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
from _common import (
    LoadGenerator,
    LoadResult,
    add_output_options,
    machine_table,
    median,
    publish,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import iris_rows, put_iris_model
from tests.support.processes import cpu_seconds
from tests.support.server import ServerProcess

from modelhost.history import Distribution, MetricStore, Point

CONTENT_TYPE = "application/json"
ON, OFF = "history on", "history off"
OVERHEAD_TARGET_MS = 0.02
QUERY_TARGET_MS = 50.0
ENDPOINTS = 20
DAY_S = 86400


def _url(server: ServerProcess, endpoint: str) -> str:
    return f"{server.url}/endpoints/{endpoint}/invocations"


def overhead(
    scratch: Path, generator: LoadGenerator, args: argparse.Namespace
) -> tuple[list[str], dict[tuple[str, int], list[tuple[LoadResult, float]]]]:
    servers = {
        ON: ServerProcess(scratch / "on", env={"MODELHOST_METRICS_HISTORY": "1"}),
        OFF: ServerProcess(scratch / "off", env={"MODELHOST_METRICS_HISTORY": "0"}),
    }
    endpoints: dict[str, str] = {}
    runs: dict[tuple[str, int], list[tuple[LoadResult, float]]] = {
        (m, c): [] for m in servers for c in args.connections
    }
    try:
        for mode, server in servers.items():
            server.start()
            endpoints[mode] = deploy(server.client("sagemaker"), put_iris_model(server.data_dir))
        for mode, server in servers.items():  # warm-up: connections, pools, caches
            generator.run(_url(server, endpoints[mode]), max(args.connections), 2.0)
        modes = list(servers)
        for round_ in range(1, args.rounds + 1):
            order = modes if round_ % 2 else modes[::-1]
            for connections in args.connections:
                for mode in order:
                    server = servers[mode]
                    cpu = cpu_seconds(server.pid)
                    load = generator.run(_url(server, endpoints[mode]), connections, args.duration)
                    per_request_us = (cpu_seconds(server.pid) - cpu) / max(load.requests, 1) * 1e6
                    runs[mode, connections].append((load, per_request_us))
                    print(
                        f"round {round_} {mode:>12} c={connections:<3} p50 {load.p50_ms:6.3f} "
                        f"ms  p99 {load.p99_ms:6.3f} ms  {load.rps:7,.0f} req/s  server "
                        f"{per_request_us:5.0f} us/req  errors {load.errors}",
                        file=sys.stderr,
                    )
    finally:
        for mode, server in servers.items():
            if mode in endpoints and server.process is not None and server.process.poll() is None:
                undeploy(server.client("sagemaker"), endpoints[mode])
            server.stop()
    lines = [
        "## Real-time overhead, history on vs off",
        "",
        f"{args.rounds} rounds of {args.duration:g} s per cell, medians; one instance each.",
        "",
        "| c | mode | p50 ms | p99 ms | req/s | server CPU us/req | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for connections in args.connections:
        for mode in servers:
            cell = runs[mode, connections]
            lines.append(
                f"| {connections} | {mode} | {median([r.p50_ms for r, _ in cell]):.3f} | "
                f"{median([r.p99_ms for r, _ in cell]):.3f} | "
                f"{median([r.rps for r, _ in cell]):,.0f} | "
                f"{median([u for _, u in cell]):.0f} | {sum(r.errors for r, _ in cell)} |"
            )
        on = median([r.p50_ms for r, _ in runs[ON, connections]])
        off = median([r.p50_ms for r, _ in runs[OFF, connections]])
        verdict = "meets" if on - off <= OVERHEAD_TARGET_MS else "misses"
        lines.append(
            f"| {connections} | **added** | **{on - off:+.3f}** | | | | {verdict} the "
            f"{OVERHEAD_TARGET_MS} ms target |"
        )
    return lines, runs


def per_answer() -> list[str]:
    """The recording's own cost, in process: what `count_answer` does per answer (the
    Prometheus histograms, plus the history's two observers when on), best of 5."""
    import timeit

    from modelhost import metrics

    off = metrics.for_variant("bench-off", "v")
    on = metrics.for_variant("bench-on", "v")
    model: list[float] = []
    overhead: list[float] = []
    on.history_model, on.history_overhead = model.append, overhead.append

    def answer(series: metrics.VariantMetrics) -> None:
        series.answered(0.00081, None)
        series.overhead(0.00012)

    n = 100_000
    cost = {
        name: min(timeit.repeat(lambda s=series: answer(s), number=n, repeat=5)) / n * 1e6
        for name, series in ((OFF, off), (ON, on))
    }
    return [
        "## Cost per answer, in process",
        "",
        "`VariantMetrics.answered` + `overhead` (what the server runs after each answer), "
        f"best of 5 x {n:,}:",
        "",
        "| history off | history on | added |",
        "|---|---|---|",
        f"| {cost[OFF]:.2f} us | {cost[ON]:.2f} us | {cost[ON] - cost[OFF]:+.2f} us |",
    ]


def _latency_sketch(rng: random.Random, calls: int) -> Distribution:
    """What 10 s of live traffic leaves: `calls` latencies around 800 us."""
    made = Distribution()
    for _ in range(calls):
        made.observe(rng.lognormvariate(6.7, 0.25))
    return made


def seed(path: Path, end: float) -> tuple[int, float]:
    """A day of 10 s points for 20 endpoints; returns (points, seconds it took)."""
    store = MetricStore(path)
    rng = random.Random(1)
    started = time.perf_counter()
    written = 0
    first = int(end - DAY_S) // 60 * 60
    sketches = [_latency_sketch(rng, 50) for _ in range(64)]  # reused: seeding speed
    for index in range(ENDPOINTS):
        dims = (("EndpointName", f"ep-{index:02d}"), ("VariantName", "AllTraffic"))
        points: list[Point] = []
        for slot in range(first, int(end), 10):
            calls = Distribution()
            calls.observe(50.0)
            points.append(Point(("AWS/SageMaker", "Invocations", dims), "None", slot, calls))
            points.append(
                Point(
                    ("AWS/SageMaker", "ModelLatency", dims),
                    "Microseconds",
                    slot,
                    sketches[rng.randrange(64)],
                )
            )
        for chunk in range(0, len(points), 4000):
            store.write(points[chunk : chunk + 4000])
        written += len(points)
        print(f"seeded endpoint {index + 1}/{ENDPOINTS}", file=sys.stderr)
    store.close()
    return written, time.perf_counter() - started


def _queries(metric: str, stat: str, period: int) -> list[dict]:
    return [
        {
            "Id": f"q{index}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SageMaker",
                    "MetricName": metric,
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": f"ep-{index:02d}"},
                        {"Name": "VariantName", "Value": "AllTraffic"},
                    ],
                },
                "Period": period,
                "Stat": stat,
            },
        }
        for index in range(ENDPOINTS)
    ]


def _pages(cw, queries: list[dict], start: float, end: float) -> Iterator[dict]:
    token = None
    while True:
        extra = {"NextToken": token} if token else {}
        page = cw.get_metric_data(
            MetricDataQueries=queries,
            StartTime=datetime.datetime.fromtimestamp(start, datetime.UTC),
            EndTime=datetime.datetime.fromtimestamp(end, datetime.UTC),
            **extra,
        )
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _raw_pages(url: str, queries: list[dict], start: float, end: float) -> int:
    """The same call over plain HTTP (AWS JSON 1.0, unsigned: the server has no keys),
    every page; the datapoints returned. No client-side parsing into datetimes."""
    count, token = 0, None
    while True:
        body: dict = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
        if token:
            body["NextToken"] = token
        request = urllib.request.Request(
            url,
            data=orjson.dumps(body),
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "GraniteServiceVersion20100801.GetMetricData",
            },
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            page = orjson.loads(response.read())
        count += sum(len(r["Values"]) for r in page["MetricDataResults"])
        token = page.get("NextToken")
        if not token:
            return count


def _p50_p90(timings: list[float]) -> tuple[float, float]:
    return statistics.median(timings), sorted(timings)[int(0.9 * (len(timings) - 1))]


def queries(scratch: Path, calls: int) -> list[str]:
    data = scratch / "seeded"
    end = time.time() // 60 * 60
    points, seconds = seed(data / "metrics.db", end)
    size_mb = (data / "metrics.db").stat().st_size / 1024**2
    server = ServerProcess(data).start()
    lines = [
        "## GetMetricData over a day of 10 s points, 20 endpoints",
        "",
        f"Seeded {points:,} 10 s points (and their minute rollups) in {seconds:.0f} s; "
        f"metrics.db {size_mb:.0f} MB. One GetMetricData of 20 queries (one per endpoint) "
        f"over the whole day, every page, {calls} calls each: over plain HTTP (the server's "
        "answer, and the server's CPU time for it, which the machine's other load moves "
        "less) and with boto3 (what a script waits for, botocore's parsing of every "
        "timestamp included). The target is judged on the server's answer.",
        "",
        "| query | period | datapoints | HTTP p50 ms | HTTP p90 ms | server CPU ms | "
        "boto3 p50 ms | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    try:
        cw = server.client("cloudwatch")
        for metric, stat, period in (
            ("Invocations", "Sum", 300),
            ("ModelLatency", "p99", 300),
            ("ModelLatency", "Average", 60),
            ("ModelLatency", "p99", 3600),
            ("Invocations", "Sum", 10),
        ):
            asked = _queries(metric, stat, period)
            raw, boto, cpu, count = [], [], [], 0
            for _ in range(calls):
                began, cpu_before = time.perf_counter(), cpu_seconds(server.pid)
                count = _raw_pages(server.url + "/", asked, end - DAY_S, end)
                raw.append((time.perf_counter() - began) * 1e3)
                cpu.append((cpu_seconds(server.pid) - cpu_before) * 1e3)
                began = time.perf_counter()
                for _page in _pages(cw, asked, end - DAY_S, end):
                    pass
                boto.append((time.perf_counter() - began) * 1e3)
            p50, p90 = _p50_p90(raw)
            verdict = "meets" if p50 <= QUERY_TARGET_MS else "misses"
            lines.append(
                f"| {metric} {stat} | {period} s | {count:,} | {p50:.1f} | {p90:.1f} | "
                f"{statistics.median(cpu):.0f} | {statistics.median(boto):.1f} | "
                f"{verdict} {QUERY_TARGET_MS:g} ms |"
            )
            print(lines[-1], file=sys.stderr)
    finally:
        server.stop()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--connections",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[1, 8],
    )
    parser.add_argument("--calls", type=int, default=10, help="GetMetricData calls per query")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "modelhost"), default="auto")
    parser.add_argument(
        "--part", choices=("all", "overhead", "queries"), default="all", help="what to run"
    )
    add_output_options(parser, "metrics_history")
    args = parser.parse_args(argv)
    body = orjson.dumps(iris_rows(3))
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        generator = LoadGenerator.choose(args.loadgen, body, CONTENT_TYPE, scratch)
        answer_lines, overhead_lines, query_lines = [], [], []
        if args.part in ("all", "overhead"):
            answer_lines = per_answer()
            overhead_lines, _ = overhead(scratch, generator, args)
        if args.part in ("all", "queries"):
            query_lines = queries(scratch, args.calls)
    report = [
        "# Metric history: recording overhead and GetMetricData",
        "",
        *machine_table(generator.describe()),
        "",
        *answer_lines,
        "",
        *overhead_lines,
        "",
        *query_lines,
        "",
    ]
    publish("\n".join(report), args.out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
