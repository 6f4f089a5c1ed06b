"""What placing instances on Ray costs, and where modelhost on Ray stands next to Ray Serve:
the same model on the same machine through the `process` backend, through the `ray`
backend (a one-node Ray cluster the benchmark starts, `ray.cluster_utils.Cluster`) and
served by Ray Serve itself (benchmarks/peers.py's Ray Serve app, in its own virtualenv),
side by side: CreateEndpoint -> InService (Ray Serve: start -> first answer), p50/p99 at
one connection and requests/s at eight, every modelhost request routed
(`POST /endpoints/<name>/invocations`), the same JSON body of three iris rows for all.
Then serverless cold starts from zero on the Ray cluster: the first request to an
endpoint scaled to zero, which waits for Ray to place an actor, for the actor to unpack
the model and for its model server to answer.

Every system gets the same replicas (ml.c5.large instances, or Ray Serve replicas) and
one BLAS thread per replica, and they run one after the other, never at once. Both
modelhost servers read the model from the same moto S3 server, since the ray backend's
instances download model data on their node. On one host the "network hop" is the
node's address instead of loopback; on a real cluster it is a real network, which this
cannot show.

Usage:
    python benchmarks/ray_backend.py [--duration S] [--replicas N] [--cold-starts N]
                                     [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from _common import LoadGenerator, add_output_options, machine_table, publish, scratch_dir
from peers import ONE_THREAD, peer_server
from serverless_cold_start import deploy_serverless, timed_invocation
from tests.support.endpoints import deploy, undeploy
from tests.support.models import iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import moto_server
from tests.support.server import ServerProcess

BODY = json.dumps(iris_rows(3)).encode()
INSTANCE_TYPE = "ml.c5.large"
IDLE_S = 0.5  # serverless idle period before an endpoint scales to zero
GIB = 1024**3


class _Server(ServerProcess):
    def __init__(self, data_dir: Path, env: dict[str, str], extra: list[str]) -> None:
        super().__init__(data_dir, env=env, log_level="warning")
        self.extra = extra

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]


def _load_row(
    name: str, url: str, ready_s: float, load: LoadGenerator, duration_s: float
) -> dict[str, Any]:
    load.run(url, 1, 1)  # warm the connections and the model
    one = load.run(url, 1, duration_s)
    eight = load.run(url, 8, duration_s)
    print(f"  {name}: p50 {one.p50_ms:.2f} ms, {eight.rps:,.0f} req/s at 8", file=sys.stderr)
    return {
        "system": name,
        "ready_s": ready_s,
        "p50_ms": one.p50_ms,
        "p99_ms": one.p99_ms,
        "rps_8": eight.rps,
        "errors": one.errors + eight.errors,
    }


def _modelhost_row(
    name: str,
    server: ServerProcess,
    model_url: str,
    replicas: int,
    load: LoadGenerator,
    duration_s: float,
) -> dict[str, Any]:
    sagemaker = server.client("sagemaker")
    started = time.monotonic()
    endpoint = deploy(
        sagemaker,
        model_url,
        instance_type=INSTANCE_TYPE,
        variants=[("AllTraffic", replicas, 1.0)],
        environment=ONE_THREAD,
        timeout_s=300,
    )
    ready_s = time.monotonic() - started
    try:
        url = f"{server.url}/endpoints/{endpoint}/invocations"
        return _load_row(name, url, ready_s, load, duration_s)
    finally:
        undeploy(sagemaker, endpoint)


def _ray_serve_row(
    work: Path, replicas: int, load: LoadGenerator, duration_s: float
) -> dict[str, Any]:
    model_path = work / "model.joblib"
    model_path.write_bytes(iris_model_bytes())
    cores = len(os.sched_getaffinity(0))
    started = time.monotonic()
    with peer_server("ray", work, model_path, replicas, cores, []) as (url, body, version):
        ready_s = time.monotonic() - started
        if body != BODY:
            raise RuntimeError("Ray Serve's app expects a different body than the one sent")
        return _load_row(f"Ray Serve {version}", url, ready_s, load, duration_s)


def _model_servers_under(raylet_pid: int) -> list[int]:
    """The model servers running on the Ray node whose raylet is `raylet_pid` (other
    servers on a shared machine run model servers too)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process(raylet_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "modelhost.modelserver" in " ".join(process.cmdline()):
                    found.append(process.pid)
    return found


def _cold_starts(
    server: ServerProcess, model_url: str, raylet_pid: int, rounds: int
) -> list[float]:
    sagemaker = server.client("sagemaker")
    name = deploy_serverless(sagemaker, model_url, timeout_s=300)
    url = f"{server.url}/endpoints/{name}/invocations"
    cold = []
    try:
        for index in range(rounds):
            deadline = time.monotonic() + 120
            while _model_servers_under(raylet_pid):
                if time.monotonic() > deadline:
                    raise RuntimeError("the serverless endpoint did not scale to zero")
                time.sleep(0.05)
            cold.append(timed_invocation(url))
            print(
                f"  serverless on Ray, round {index + 1}/{rounds}: cold {cold[-1] * 1000:.0f} ms",
                file=sys.stderr,
            )
    finally:
        undeploy(sagemaker, name)
    return cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--replicas", type=int, default=2, help="instances / replicas each")
    parser.add_argument("--cold-starts", type=int, default=5, help="serverless cold starts")
    add_output_options(parser, "ray_backend")
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    rows = []
    cold: list[float] = []
    with scratch_dir(args.keep_data) as work, moto_server() as s3:
        bucket = s3.create_bucket("bench")
        s3.s3_client().put_object(
            Bucket=bucket,
            Key="iris/model.tar.gz",
            Body=model_tarball({"model.joblib": iris_model_bytes()}),
        )
        model_url = f"s3://{bucket}/iris/model.tar.gz"
        env = {"AWS_ENDPOINT_URL_S3": s3.endpoint_url, "MODELHOST_SERVERLESS_IDLE_S": str(IDLE_S)}
        load = LoadGenerator.choose("auto", BODY, "application/json", work)

        print("process backend ...", file=sys.stderr, flush=True)
        process = _Server(work / "process-data", env, []).start()
        try:
            rows.append(
                _modelhost_row(
                    "modelhost, process backend",
                    process,
                    model_url,
                    args.replicas,
                    load,
                    args.duration,
                )
            )
        finally:
            process.stop()

        print("ray backend ...", file=sys.stderr, flush=True)
        # Logical CPUs for every instance and a serverless one (Ray does not pin them).
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2 * args.replicas + 2,
                "memory": 64 * GIB,
                "object_store_memory": 80 * 1024**2,
            },
        )
        try:
            ray_server = _Server(
                work / "ray-data",
                env,
                ["--instance-backend", "ray", "--ray-address", cluster.address],
            ).start(timeout_s=120)
            try:
                rows.append(
                    _modelhost_row(
                        "modelhost, ray backend",
                        ray_server,
                        model_url,
                        args.replicas,
                        load,
                        args.duration,
                    )
                )
                if args.cold_starts:
                    raylet = cluster.head_node.all_processes["raylet"][0].process.pid
                    cold = _cold_starts(ray_server, model_url, raylet, args.cold_starts)
            finally:
                ray_server.stop()
        finally:
            cluster.shutdown()

        print("Ray Serve ...", file=sys.stderr, flush=True)
        rows.append(_ray_serve_row(work, args.replicas, load, args.duration))

    process_row, ray_row, serve_row = rows
    added_p50 = ray_row["p50_ms"] - process_row["p50_ms"]
    lead = ray_row["rps_8"] / serve_row["rps_8"] if serve_row["rps_8"] else float("inf")
    lines = [
        "# modelhost on Ray: process vs ray backend, and Ray Serve (same model, same machine)",
        "",
        *machine_table(load.describe()),
        "",
        "| system | CreateEndpoint -> InService | p50 @1 | p99 @1 | req/s @8 | errors |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['system']} | {r['ready_s']:.1f} s | {r['p50_ms']:.2f} ms | "
            f"{r['p99_ms']:.2f} ms | {r['rps_8']:,.0f} | {r['errors']} |"
            for r in rows
        ),
        "",
        f"- ray backend's added p50 over the process backend: {added_p50:+.2f} ms "
        f"(target ≤ 0.2 ms: {'met' if added_p50 <= 0.2 else 'missed'})",
        f"- ray backend's req/s @8 over Ray Serve's: {lead:.1f}x "
        f"(target ≥ 5x: {'met' if lead >= 5 else 'missed'})",
    ]
    if cold:
        lines.append(
            f"- serverless cold start from zero on the Ray cluster ({len(cold)} rounds): "
            f"median {statistics.median(cold) * 1000:.0f} ms, "
            f"max {max(cold) * 1000:.0f} ms"
        )
    lines += [
        "",
        f"{args.duration:g} s per load run; {args.replicas} {INSTANCE_TYPE} instances "
        f"(Ray Serve: {args.replicas} replicas) each, one BLAS thread per replica; Ray Serve's "
        "time is from its process start to its first answer (its own Ray cluster included).",
    ]
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
