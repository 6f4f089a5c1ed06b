"""Multi-model endpoints: what a cache hit costs next to a single-model endpoint, what a
cold load costs, and the memory of N models on one instance next to N endpoints.

Why this shape:
- A cache hit's extra cost is only meaningful next to the single-model path measured in the
  same run by the same client, so both are timed over one keep-alive connection each, in
  alternating blocks, and compared at the median (p50) and p99.
- On a busy machine the p50 of either path moves by more than the difference sought from
  one block to the next (scheduling, not modelhost). So the table also gives the fastest
  request of each path (the fixed cost, which noise only adds to) and the CPU time the
  router process and the instance spent per request (from /proc/PID/stat, read around
  each block): what the multi-model path costs on top, whatever the machine's load.
- A cold load is the first request for a model no instance has loaded: unpacking its
  archive, `POST /models` and the prediction. Each is a different model, so nothing is
  cached; the instance's own ModelLoadingTime (from /metrics) is shown beside it.
- Memory is the proportional set size (PSS, /proc/PID/smaps_rollup) of the instance
  processes: instances are forked from a fork server and share its pages, which RSS
  would count once per instance. N single-model endpoints need N instances; on a small
  machine --endpoints can be lower than --models, and the table says which N it measured.
- Requests go over plain HTTP to `/endpoints/<name>/invocations` with the
  X-Amzn-SageMaker-Target-Model header (what boto3 sends), so signing is not in the figure.

Usage:
    python benchmarks/multi_model.py [--requests 2000] [--cold 10] [--models 100]
        [--endpoints 10] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    add_output_options,
    machine_table,
    publish,
    read_histogram,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_iris_model, put_model_prefix
from tests.support.processes import instance_pids
from tests.support.server import ServerProcess

ROW = b"5.1,3.5,1.4,0.2"
BLOCK = 100
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


class _Client:
    """One keep-alive connection to the server's runtime path."""

    def __init__(self, url: str, endpoint: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.path = f"/endpoints/{endpoint}/invocations"

    def timed(self, target: str | None = None) -> float:
        headers = {"Content-Type": "text/csv"}
        if target is not None:
            headers["X-Amzn-SageMaker-Target-Model"] = target
        started = time.perf_counter()
        self.connection.request("POST", self.path, ROW, headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"invocation failed: {response.status} {body[:300]!r}")
        return elapsed


def _pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def _cpu_s(pids: list[int]) -> float:
    """User and system CPU seconds the processes used so far (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * _TICK_S


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    server = ServerProcess(
        scratch / "server", env={"MODELHOST_MAX_INSTANCES": str(args.endpoints + 4)}
    )
    endpoints: list[str] = []
    sagemaker = None
    try:
        print("starting server ...", file=sys.stderr)
        server.start()
        sagemaker = server.client("sagemaker")
        count = max(args.models, args.cold + 1)
        print(f"training and packing {count} models ...", file=sys.stderr)
        prefix = put_model_prefix(server.data_dir, "bench-mme", count)
        single = deploy(sagemaker, put_iris_model(server.data_dir))
        endpoints.append(single)
        multi = deploy(
            sagemaker,
            prefix,
            container_fields={"Mode": "MultiModel"},
            environment={"MODELHOST_MAX_LOADED_MODELS": str(count)},
        )
        endpoints.append(multi)

        print("cache-hit latency vs single-model ...", file=sys.stderr)
        to_single, to_multi = _Client(server.url, single), _Client(server.url, multi)
        to_multi.timed("model-0.tar.gz")  # loaded: every later request is a hit
        for _ in range(BLOCK):  # warm both paths
            to_single.timed()
            to_multi.timed("model-0.tar.gz")
        single_s: list[float] = []
        hit_s: list[float] = []
        # CPU seconds of (router, instance) spent on each path's blocks.
        cpu = {"single": [0.0, 0.0], "hit": [0.0, 0.0]}
        paths = (
            ("single", single_s, to_single, None, instance_pids(server.pid, single)),
            ("hit", hit_s, to_multi, "model-0.tar.gz", instance_pids(server.pid, multi)),
        )
        while len(single_s) < args.requests:
            for label, times, client, target, pids in paths:
                router, instance = _cpu_s([server.pid]), _cpu_s(pids)
                times.extend(client.timed(target) for _ in range(BLOCK))
                cpu[label][0] += _cpu_s([server.pid]) - router
                cpu[label][1] += _cpu_s(pids) - instance

        print("cold loads ...", file=sys.stderr)
        cold_s = [to_multi.timed(f"model-{i}.tar.gz") for i in range(1, args.cold + 1)]
        loading = read_histogram(
            server.metrics_text(), "modelhost_model_loading_time_seconds", {"endpoint": multi}
        )

        print(f"memory: {args.models} models on one instance ...", file=sys.stderr)
        base_multi = _pss_kib(instance_pids(server.pid, multi))
        for index in range(args.models):
            to_multi.timed(f"model-{index}.tar.gz")
        multi_kib = _pss_kib(instance_pids(server.pid, multi))
        undeploy(sagemaker, endpoints.pop())
        undeploy(sagemaker, endpoints.pop())

        print(f"memory: {args.endpoints} single-model endpoints ...", file=sys.stderr)
        url = put_iris_model(server.data_dir)
        for _ in range(args.endpoints):
            endpoints.append(deploy(sagemaker, url))
        for name in endpoints:
            _Client(server.url, name).timed()
        singles_kib = sum(_pss_kib(instance_pids(server.pid, name)) for name in endpoints)
        return {
            "single": single_s,
            "hit": hit_s,
            "cpu": cpu,
            "cold": cold_s,
            "loading_mean": loading.mean,
            "multi_base_kib": base_multi,
            "multi_kib": multi_kib,
            "singles_kib": singles_kib,
        }
    finally:
        if sagemaker is not None:
            for name in endpoints:
                undeploy(sagemaker, name)
        server.stop()


def report(args: argparse.Namespace, result: dict[str, Any]) -> str:
    ms = 1000.0
    single, hit = result["single"], result["hit"]
    us = 1e6
    cpu = {
        label: [t / len(result[label]) * us for t in pair] for label, pair in result["cpu"].items()
    }
    n, e = args.models, args.endpoints
    per_model = (result["multi_kib"] - result["multi_base_kib"]) / max(n, 1)
    per_endpoint = result["singles_kib"] / max(e, 1)
    lines = [
        "# Multi-model endpoints",
        "",
        *machine_table("python http.client, one keep-alive connection, sequential"),
        "",
        f"## Latency, {len(single)} requests each, one iris row (text/csv)",
        "",
        "| path | p50 ms | p99 ms | fastest ms | router CPU µs/req | instance CPU µs/req |",
        "|---|---|---|---|---|---|",
        f"| single-model endpoint | {statistics.median(single) * ms:.3f} "
        f"| {_percentile(single, 0.99) * ms:.3f} | {min(single) * ms:.3f} "
        f"| {cpu['single'][0]:.0f} | {cpu['single'][1]:.0f} |",
        f"| multi-model, cache hit | {statistics.median(hit) * ms:.3f} "
        f"| {_percentile(hit, 0.99) * ms:.3f} | {min(hit) * ms:.3f} "
        f"| {cpu['hit'][0]:.0f} | {cpu['hit'][1]:.0f} |",
        f"| difference (target ≤ 0.1 ms at p50) | "
        f"{(statistics.median(hit) - statistics.median(single)) * ms:+.3f} | "
        f"| {(min(hit) - min(single)) * ms:+.3f} | {cpu['hit'][0] - cpu['single'][0]:+.0f} "
        f"| {cpu['hit'][1] - cpu['single'][1]:+.0f} |",
        "",
        f"## Cold load of a small model ({len(result['cold'])} models, each loaded once)",
        "",
        "| measure | ms |",
        "|---|---|",
        f"| first request (unpack + load + predict), p50 | "
        f"{statistics.median(result['cold']) * ms:.1f} |",
        f"| first request, max | {max(result['cold']) * ms:.1f} |",
        f"| ModelLoadingTime (instance load), mean | {result['loading_mean'] * ms:.1f} |",
        "",
        "## Memory (PSS of the instance processes)",
        "",
        "| setup | MiB | per model KiB |",
        "|---|---|---|",
        f"| 1 multi-model instance, idle | {result['multi_base_kib'] / 1024:.1f} | |",
        f"| 1 multi-model instance, {n} models loaded | {result['multi_kib'] / 1024:.1f} "
        f"| {per_model:.1f} |",
        f"| {e} single-model endpoints (1 instance each) | "
        f"{result['singles_kib'] / 1024:.1f} | {per_endpoint:.0f} |",
        f"| {n} single-model endpoints, extrapolated from {e} | {per_endpoint * n / 1024:.1f} | |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=10)
    add_output_options(parser, "multi_model")
    args = parser.parse_args()
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        result = run(args, scratch)
    publish(report(args, result), args.out)


if __name__ == "__main__":
    main()
