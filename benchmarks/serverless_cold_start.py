"""Serverless cold starts: the first request to a scaled-to-zero endpoint, next to warm
requests, and what the fork server buys over a fresh interpreter per instance.

Why this shape:
- A cold start is only meaningful next to a warm request measured in the same run on the
  same machine, so every round times one cold request and then warm ones right after it.
- Several cold starts need the endpoint to scale back to zero between rounds; the server
  runs with a short idle period (MODELHOST_SERVERLESS_IDLE_S) instead of the benchmark
  waiting minutes, and each round waits until the instance process is really gone.
- The same rounds run against a second server with MODELHOST_FORK_SERVER=0 (each instance
  a fresh `python -m modelhost.modelserver`), so the fork server's effect is measured,
  not assumed. The servers run one after the other, never at the same time.
- Real-time endpoints start their instances through the same backend, so CreateEndpoint
  to InService for one ml.m5.large instance is timed on both servers too.
- Requests go over plain HTTP to `/endpoints/<name>/invocations` (what boto3's
  InvokeEndpoint sends), so client-side signing is not part of the figure.

Usage:
    python benchmarks/serverless_cold_start.py [--rounds 10] [--warm 5] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    add_output_options,
    machine_table,
    post,
    publish,
    read_histogram,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_iris_model
from tests.support.processes import instance_processes
from tests.support.server import ServerProcess

ROW = b"5.1,3.5,1.4,0.2"
IDLE_S = 0.5


def deploy_serverless(
    sagemaker: Any, model_url: str, timeout_s: float = 120.0, image: str = "modelhost/sklearn"
) -> str:
    name = f"bench-sl-{uuid.uuid4().hex[:8]}"
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/bench",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + timeout_s
    while sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] != "InService":
        if time.monotonic() > deadline:
            raise RuntimeError(f"serverless endpoint {name} did not come up")
        time.sleep(0.1)
    return name


def _wait_for_zero(server: ServerProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while instance_processes(server.pid):
        if time.monotonic() > deadline:
            raise RuntimeError("the serverless endpoint did not scale to zero")
        time.sleep(0.05)


def timed_invocation(url: str, payload: bytes = ROW) -> float:
    started = time.perf_counter()
    status, body = post(url, payload, "text/csv")
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"invocation failed: {status} {body[:300]!r}")
    return elapsed


def _measure(
    label: str, env: dict[str, str], scratch: Path, rounds: int, warm_per_round: int
) -> dict[str, Any]:
    server = ServerProcess(
        scratch / label,
        env={"MODELHOST_SERVERLESS_IDLE_S": str(IDLE_S), "MODELHOST_HEALTH_INTERVAL": "0.1", **env},
    )
    endpoints: list[str] = []
    sagemaker = None
    try:
        print(f"[{label}] starting server ...", file=sys.stderr)
        server.start()
        sagemaker = server.client("sagemaker")
        model_url = put_iris_model(server.data_dir)
        started = time.perf_counter()
        endpoints.append(deploy(sagemaker, model_url))
        realtime_create = time.perf_counter() - started
        undeploy(sagemaker, endpoints.pop())
        name = deploy_serverless(sagemaker, model_url)
        endpoints.append(name)
        url = f"{server.url}/endpoints/{name}/invocations"
        cold: list[float] = []
        warm: list[float] = []
        for index in range(rounds):
            _wait_for_zero(server)
            cold.append(timed_invocation(url))
            warm.extend(timed_invocation(url) for _ in range(warm_per_round))
            print(
                f"[{label}] round {index + 1}/{rounds}: cold {cold[-1] * 1000:.0f} ms",
                file=sys.stderr,
            )
        setup = read_histogram(
            server.metrics_text(), "modelhost_model_setup_time_seconds", {"endpoint": name}
        )
        return {
            "cold": cold,
            "warm": warm,
            "setup_mean": setup.mean,
            "realtime_create": realtime_create,
        }
    finally:
        if sagemaker is not None:
            for name in endpoints:
                undeploy(sagemaker, name)
        server.stop()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def report(results: dict[str, dict[str, Any]], machine: list[str], rounds: int) -> str:
    lines = [
        "# Serverless cold start",
        "",
        *machine,
        "",
        f"{rounds} cold starts per server (scaled to zero between them, idle period "
        f"{IDLE_S} s); warm requests right after each cold one.",
        "",
        "| instances started by | cold p50 | cold p90 | warm p50 | cold minus warm (p50) "
        "| ModelSetupTime mean | real-time CreateEndpoint → InService |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, result in results.items():
        cold, warm = result["cold"], result["warm"]
        lines.append(
            f"| {label} | {_ms(statistics.median(cold))} | {_ms(_quantile(cold, 0.9))} "
            f"| {_ms(statistics.median(warm))} "
            f"| {_ms(statistics.median(cold) - statistics.median(warm))} "
            f"| {_ms(result['setup_mean'])} | {_ms(result['realtime_create'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="cold starts per server")
    parser.add_argument("--warm", type=int, default=5, help="warm requests after each cold one")
    add_output_options(parser, "serverless_cold_start")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        results = {
            "fork server (default)": _measure("forkserver", {}, scratch, args.rounds, args.warm),
            "fresh interpreter (MODELHOST_FORK_SERVER=0)": _measure(
                "fresh", {"MODELHOST_FORK_SERVER": "0"}, scratch, args.rounds, args.warm
            ),
        }
    text = report(results, machine_table("urllib, one request at a time"), args.rounds)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
