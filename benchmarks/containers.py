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
- `--baseline SRC` measures another modelhost source tree (e.g. `git archive main`
  unpacked) in the same run, server and image both, for a before/after on one noisy
  machine; `--cold-only` keeps to the cold starts.

Usage:
    python benchmarks/containers.py [--rounds 5] [--duration 10] [--out FILE.md]
        [--cold-only] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    LoadGenerator,
    LoadResult,
    add_output_options,
    machine_table,
    publish,
    scratch_dir,
    sigterm_as_interrupt,
)
from serverless_cold_start import deploy_serverless, timed_invocation
from tests.support.cli import run_cli
from tests.support.containers import containers_labelled, engine_usable, podman, podman_service
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_iris_model
from tests.support.processes import instance_processes
from tests.support.server import ServerProcess

from modelhost.instances import scope_key

IMAGE = "modelhost-bench/sklearn:1"
BASELINE_IMAGE = "modelhost-bench/sklearn:baseline"
ROWS = b"5.1,3.5,1.4,0.2\n6.7,3.1,4.4,1.4\n6.3,3.3,6.0,2.5"
IDLE_S = 0.5


def _build(engine: str, image: str = IMAGE, baseline: Path | None = None) -> float:
    """`modelhost images build` of the image, as a user runs it (from `baseline`'s source
    when given); its step timings go to stderr."""
    started = time.perf_counter()
    built = run_cli(
        *("images", "build", "--framework", "sklearn", "--tag", image),
        *(("--source", str(baseline)) if baseline is not None else ()),
        env={"MODELHOST_CONTAINER_HOST": engine, **_source_env(baseline)},
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    if built.returncode != 0:
        raise RuntimeError(f"modelhost images build failed:\n{built.stderr[-3000:]}")
    print(built.stdout, file=sys.stderr)
    return elapsed


def _source_env(source: Path | None) -> dict[str, str]:
    """The environment that runs modelhost from `source` (None: the installed one)."""
    return {"PYTHONPATH": str(source / "src")} if source is not None else {}


def _containers(server: ServerProcess) -> list[dict[str, Any]]:
    return containers_labelled(f"modelhost.scope={scope_key(server.data_dir.resolve())}")


def _instances(server: ServerProcess) -> int:
    """Instances running: processes and containers, not the spare containers waiting."""
    containers = [
        c for c in _containers(server) if c["Labels"].get("modelhost.instance") != "spare"
    ]
    return len(instance_processes(server.pid)) + len(containers)


def _spares_waiting(server: ServerProcess) -> bool:
    """Whether every spare container has its imports done (none: true), so a round
    measures a cold start from a spare, not one racing the spare's own start."""
    for container in _containers(server):
        if container["Labels"].get("modelhost.instance") == "spare":
            logs = podman("logs", str(container["Id"]), check=False)
            if "spare ready" not in logs.stdout + logs.stderr:
                return False
    return True


def _wait_for_zero(server: ServerProcess, timeout_s: float = 60.0) -> None:
    """Back at zero instances, with any spare ready."""
    deadline = time.monotonic() + timeout_s
    while _instances(server) or not _spares_waiting(server):
        if time.monotonic() > deadline:
            raise RuntimeError("the serverless endpoint did not scale to zero")
        time.sleep(0.05)


def _measure(
    label: str,
    engine: str,
    scratch: Path,
    rounds: int,
    duration_s: float,
    load: LoadGenerator | None,
    image: str = IMAGE,
    source: Path | None = None,
) -> dict[str, Any]:
    """`load` None: the cold starts only."""
    server = ServerProcess(
        scratch / label,
        env={
            "MODELHOST_CONTAINER_HOST": engine,
            "MODELHOST_SERVERLESS_IDLE_S": str(IDLE_S),
            "MODELHOST_HEALTH_INTERVAL": "0.1",
            **_source_env(source),
        },
    )
    results: dict[str, Any] = {}
    endpoints: list[str] = []
    sagemaker = None
    try:
        print(f"[{label}] starting server ...", file=sys.stderr)
        server.start()
        sagemaker = server.client("sagemaker")
        model_url = put_iris_model(server.data_dir)
        if load is not None:
            results = _steady(label, server, sagemaker, model_url, image, rounds, duration_s, load)
        name = deploy_serverless(sagemaker, model_url, 180.0, image)
        endpoints.append(name)
        url = f"{server.url}/endpoints/{name}/invocations"
        cold: list[float] = []
        for index in range(rounds):
            _wait_for_zero(server)
            cold.append(timed_invocation(url, ROWS))
            print(f"[{label}] cold start {index + 1}: {cold[-1] * 1000:.0f} ms", file=sys.stderr)
        return {**results, "cold": cold}
    finally:
        if sagemaker is not None:
            for name in endpoints:
                undeploy(sagemaker, name)
        server.stop()


def _steady(
    label: str,
    server: ServerProcess,
    sagemaker: Any,
    model_url: str,
    image: str,
    rounds: int,
    duration_s: float,
    load: LoadGenerator,
) -> dict[str, Any]:
    """CreateEndpoint → InService, then latency at one connection and req/s at eight."""
    creates = []
    for _ in range(rounds):
        started = time.perf_counter()
        name = deploy(sagemaker, model_url, image=image, timeout_s=180)
        creates.append(time.perf_counter() - started)
        if _instances(server) != 1:
            raise RuntimeError(f"[{label}] expected one instance, found {_instances(server)}")
        undeploy(sagemaker, name)
    print(f"[{label}] InService in {statistics.median(creates):.2f} s", file=sys.stderr)
    name = deploy(sagemaker, model_url, image=image, timeout_s=180)
    try:
        url = f"{server.url}/endpoints/{name}/invocations"
        for _ in range(50):
            timed_invocation(url, ROWS)  # warm up: connections, caches
        single = load.run(url, 1, duration_s)
        eight = load.run(url, 8, duration_s)
    finally:
        undeploy(sagemaker, name)
    print(f"[{label}] p50 {single.p50_ms:.2f} ms, {eight.rps:.0f} req/s at 8", file=sys.stderr)
    return {"create": creates, "single": single, "eight": eight}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _median_ms(result: dict[str, Any], key: str) -> str:
    return _ms(statistics.median(result[key])) if key in result else "-"


def report(results: dict[str, dict[str, Any]], build_s: float, machine: list[str]) -> str:
    """A column per measured server: process, the baseline's container (when measured),
    this tree's container."""
    labels = list(results)
    process, container = results["process"], results["container"]
    rows: list[tuple[str, list[str], str]] = [
        (
            "CreateEndpoint → InService (median)",
            [_median_ms(results[label], "create") for label in labels],
            "",
        ),
        (
            "serverless cold start (median)",
            [_median_ms(results[label], "cold") for label in labels],
            "container ≤ 1 s",
        ),
        (
            "serverless cold starts (each)",
            [", ".join(f"{c * 1000:.0f}" for c in results[label]["cold"]) for label in labels],
            "",
        ),
    ]
    if "single" in process:
        p1: LoadResult = process["single"]
        p8: LoadResult = process["eight"]
        ones: list[LoadResult] = [results[label]["single"] for label in labels]
        eights: list[LoadResult] = [results[label]["eight"] for label in labels]
        c1, c8 = container["single"], container["eight"]
        blank = [""] * (len(labels) - 1)
        rows += [
            ("p50, 1 connection", [f"{r.p50_ms:.3f} ms" for r in ones], ""),
            ("added p50", [*blank, f"{c1.p50_ms - p1.p50_ms:+.3f} ms"], "≤ 0.1 ms"),
            ("p99, 1 connection", [f"{r.p99_ms:.3f} ms" for r in ones], ""),
            ("req/s, 8 connections", [f"{r.rps:,.0f}" for r in eights], ""),
            (
                "throughput, container / process",
                [*blank, f"{c8.rps / p8.rps:.1%}" if p8.rps else "-"],
                "≥ 95%",
            ),
            ("errors", [str(a.errors + b.errors) for a, b in zip(ones, eights, strict=True)], ""),
        ]
    lines = [
        "# Process vs container instances",
        "",
        *machine,
        "",
        f"The built-in sklearn server, iris, 3 CSV rows a request, one ml.m5.large instance; "
        f"`modelhost images build` of the image took {build_s:.1f} s in this run.",
        "",
        f"| | {' | '.join(labels)} | target |",
        f"|---|{'---|' * len(labels)}---|",
        *(f"| {name} | {' | '.join(cells)} | {target} |" for name, cells, target in rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="deploys and cold starts each")
    parser.add_argument("--duration", type=float, default=10, help="seconds per load run")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "modelhost"), default="auto")
    parser.add_argument("--cold-only", action="store_true", help="measure cold starts only")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another modelhost source tree whose container backend is measured too",
    )
    add_output_options(parser, "containers")
    args = parser.parse_args(argv)
    engine_usable()
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        load = LoadGenerator.choose(args.load_generator, ROWS, "text/csv", scratch)
        steady = None if args.cold_only else load
        with podman_service(scratch) as engine:
            build_s = _build(engine)
            results = {
                "process": _measure(
                    "process",
                    f"unix://{scratch}/no-engine.sock",
                    scratch,
                    args.rounds,
                    args.duration,
                    steady,
                )
            }
            if args.baseline is not None:
                source = args.baseline.resolve()
                _build(engine, BASELINE_IMAGE, source)
                results["container (baseline)"] = _measure(
                    "baseline",
                    engine,
                    scratch,
                    args.rounds,
                    args.duration,
                    steady,
                    BASELINE_IMAGE,
                    source,
                )
            results["container"] = _measure(
                "container", engine, scratch, args.rounds, args.duration, steady
            )
    text = report(results, build_s, machine_table(load.describe()))
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
