"""Process vs container instances, side by side, on the same model (the built-in sklearn
server, iris): CreateEndpoint → InService, serverless cold start, latency at one
connection and throughput at eight.

Why this shape:
- The same endpoint config runs on both: the model names one image (the built-in server,
  built here by `modelhost images build`); the server given the engine finds the image
  and runs it in a container, the server without one runs it as a process. Nothing else
  differs, so the difference is the backend's.
- The servers run one after the other, never at the same time, each with one instance.
- Cold starts need the endpoint back at zero between rounds: a short serverless idle
  period, and each round waits until no instance (process or container) is left.
- Requests go over plain HTTP to `/endpoints/<name>/invocations` through the router, as
  boto3's InvokeEndpoint does, with wrk (one thread) when installed.

Usage:
    python benchmarks/containers.py [--rounds 5] [--duration 10] [--out FILE.md]
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
    LoadGenerator,
    LoadResult,
    add_output_options,
    machine_table,
    post,
    publish,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.cli import run_cli
from tests.support.containers import containers_labelled, engine_usable, podman_service
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_iris_model
from tests.support.processes import instance_processes
from tests.support.server import ServerProcess

from modelhost.instances import scope_key

IMAGE = "modelhost-bench/sklearn:1"
ROWS = b"5.1,3.5,1.4,0.2\n6.7,3.1,4.4,1.4\n6.3,3.3,6.0,2.5"
IDLE_S = 0.5


def _build(engine: str) -> float:
    """`modelhost images build` of the image, as a user runs it; its step timings go to
    stderr."""
    started = time.perf_counter()
    built = run_cli(
        *("images", "build", "--framework", "sklearn", "--tag", IMAGE),
        env={"MODELHOST_CONTAINER_HOST": engine},
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    if built.returncode != 0:
        raise RuntimeError(f"modelhost images build failed:\n{built.stderr[-3000:]}")
    print(built.stdout, file=sys.stderr)
    return elapsed


def _deploy_serverless(sagemaker: Any, model_url: str, timeout_s: float = 180.0) -> str:
    name = f"bench-sl-{uuid.uuid4().hex[:8]}"
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url},
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


def _instances(server: ServerProcess) -> int:
    scope = f"modelhost.scope={scope_key(server.data_dir.resolve())}"
    return len(instance_processes(server.pid)) + len(containers_labelled(scope))


def _wait_for_zero(server: ServerProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _instances(server):
        if time.monotonic() > deadline:
            raise RuntimeError("the serverless endpoint did not scale to zero")
        time.sleep(0.05)


def _timed(url: str) -> float:
    started = time.perf_counter()
    status, body = post(url, ROWS, "text/csv")
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"invocation failed: {status} {body[:300]!r}")
    return elapsed


def _measure(
    label: str,
    engine: str,
    scratch: Path,
    rounds: int,
    duration_s: float,
    load: LoadGenerator,
) -> dict[str, Any]:
    server = ServerProcess(
        scratch / label,
        env={
            "MODELHOST_CONTAINER_HOST": engine,
            "MODELHOST_SERVERLESS_IDLE_S": str(IDLE_S),
            "MODELHOST_HEALTH_INTERVAL": "0.1",
        },
    )
    endpoints: list[str] = []
    sagemaker = None
    try:
        print(f"[{label}] starting server ...", file=sys.stderr)
        server.start()
        sagemaker = server.client("sagemaker")
        model_url = put_iris_model(server.data_dir)
        creates = []
        for _ in range(rounds):
            started = time.perf_counter()
            name = deploy(sagemaker, model_url, image=IMAGE, timeout_s=180)
            creates.append(time.perf_counter() - started)
            if _instances(server) != 1:
                raise RuntimeError(f"[{label}] expected one instance, found {_instances(server)}")
            undeploy(sagemaker, name)
        print(f"[{label}] InService in {statistics.median(creates):.2f} s", file=sys.stderr)

        name = deploy(sagemaker, model_url, image=IMAGE, timeout_s=180)
        endpoints.append(name)
        url = f"{server.url}/endpoints/{name}/invocations"
        for _ in range(50):
            _timed(url)  # warm up: connections, caches
        single = load.run(url, 1, duration_s)
        eight = load.run(url, 8, duration_s)
        print(
            f"[{label}] p50 {single.p50_ms:.2f} ms, {eight.rps:.0f} req/s at 8",
            file=sys.stderr,
        )
        undeploy(sagemaker, endpoints.pop())

        name = _deploy_serverless(sagemaker, model_url)
        endpoints.append(name)
        url = f"{server.url}/endpoints/{name}/invocations"
        cold: list[float] = []
        for index in range(rounds):
            _wait_for_zero(server)
            cold.append(_timed(url))
            print(f"[{label}] cold start {index + 1}: {cold[-1] * 1000:.0f} ms", file=sys.stderr)
        return {"create": creates, "cold": cold, "single": single, "eight": eight}
    finally:
        if sagemaker is not None:
            for name in endpoints:
                undeploy(sagemaker, name)
        server.stop()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report(results: dict[str, dict[str, Any]], build_s: float, machine: list[str]) -> str:
    process, container = results["process"], results["container"]
    p1: LoadResult = process["single"]
    c1: LoadResult = container["single"]
    p8: LoadResult = process["eight"]
    c8: LoadResult = container["eight"]
    rows = [
        (
            "CreateEndpoint → InService (median)",
            _ms(statistics.median(process["create"])),
            _ms(statistics.median(container["create"])),
            "",
        ),
        (
            "serverless cold start (median)",
            _ms(statistics.median(process["cold"])),
            _ms(statistics.median(container["cold"])),
            "container ≤ 1 s",
        ),
        ("p50, 1 connection", f"{p1.p50_ms:.3f} ms", f"{c1.p50_ms:.3f} ms", ""),
        (
            "added p50",
            "",
            f"{c1.p50_ms - p1.p50_ms:+.3f} ms",
            "≤ 0.1 ms",
        ),
        ("p99, 1 connection", f"{p1.p99_ms:.3f} ms", f"{c1.p99_ms:.3f} ms", ""),
        ("req/s, 8 connections", f"{p8.rps:,.0f}", f"{c8.rps:,.0f}", ""),
        (
            "throughput, container / process",
            "",
            f"{c8.rps / p8.rps:.1%}" if p8.rps else "-",
            "≥ 95%",
        ),
        ("errors", str(p1.errors + p8.errors), str(c1.errors + c8.errors), ""),
    ]
    lines = [
        "# Process vs container instances",
        "",
        *machine,
        "",
        f"The built-in sklearn server, iris, 3 CSV rows a request, one ml.m5.large instance; "
        f"`modelhost images build` of the image took {build_s:.1f} s in this run.",
        "",
        "| | process | container | target |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="deploys and cold starts each")
    parser.add_argument("--duration", type=float, default=10, help="seconds per load run")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "modelhost"), default="auto")
    add_output_options(parser, "containers")
    args = parser.parse_args(argv)
    engine_usable()
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        load = LoadGenerator.choose(args.load_generator, ROWS, "text/csv", scratch)
        with podman_service(scratch) as engine:
            build_s = _build(engine)
            results = {
                "process": _measure(
                    "process",
                    f"unix://{scratch}/no-engine.sock",
                    scratch,
                    args.rounds,
                    args.duration,
                    load,
                ),
                "container": _measure(
                    "container", engine, scratch, args.rounds, args.duration, load
                ),
            }
    text = report(results, build_s, machine_table(load.describe()))
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
