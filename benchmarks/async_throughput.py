"""Asynchronous inference, measured next to the real-time path on the same kind of instance.

1. Small payloads: two endpoints of the same model (iris LogisticRegression) on one
   ml.m5.large each, one real-time and one with an AsyncInferenceConfig (which, as on
   SageMaker, takes only asynchronous invocations), are driven by the same client threads
   in turn: the real-time one through InvokeEndpoint (a request counts when its answer
   arrives), the asynchronous one through InvokeEndpointAsync (a request counts when its
   result object exists; inputs are put in the object store beforehand, as a client
   would). Throughput is requests completed per second, wall clock, first request to last
   completion.
2. One large payload (1 GiB by default) end to end: input in the object store, 202, the
   result object; with the server's peak RSS (VmHWM) before and after, which shows
   whether the server held the payload in memory.

With `--queue redis` the queue is a private redis-server (as several servers would share
one) instead of the embedded SQLite file.

Usage:
    python benchmarks/async_throughput.py [--requests 2000] [--threads 8] [--large-mb 1024]
                                          [--queue sqlite|redis]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import threading
import time
from typing import Any

from _common import (
    machine_facts,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.async_inference import put_digest_model
from tests.support.endpoints import deploy
from tests.support.models import iris_rows, put_iris_model
from tests.support.processes import peak_rss_mb
from tests.support.redis import redis_server
from tests.support.server import ServerProcess


def _deploy_async(server: ServerProcess, model_url: str, image: str, per_instance: int = 8) -> str:
    return deploy(
        server.client("sagemaker"),
        model_url,
        image=image,
        timeout_s=180,
        async_config={
            "OutputConfig": {"S3OutputPath": "s3://bench/async/out"},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": per_instance},
        },
    )


def _drive(server: ServerProcess, threads: int, requests: int, make: Any) -> None:
    """`threads` keep-alive connections, each sending its share back to back."""

    def run(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        for n in range(index, requests, threads):
            method, path, body, headers, wanted = make(n)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != wanted:
                raise RuntimeError(f"{path}: {response.status}")
        connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _succeeded(server: ServerProcess, name: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    connection.request("GET", f"/endpoints/{name}/async-requests?state=failed")
    answer = json.loads(connection.getresponse().read())
    connection.close()
    if answer["Counts"]["failed"]:
        raise RuntimeError(f"async requests failed: {answer['Requests'][:3]}")
    return int(answer["Counts"]["succeeded"])


def realtime(server: ServerProcess, name: str, threads: int, requests: int) -> float:
    body = json.dumps(iris_rows(3)).encode()
    started = time.perf_counter()
    _drive(
        server,
        threads,
        requests,
        lambda n: (
            "POST",
            f"/endpoints/{name}/invocations",
            body,
            {"Content-Type": "application/json"},
            200,
        ),
    )
    return requests / (time.perf_counter() - started)


def asynchronous(
    server: ServerProcess, name: str, threads: int, requests: int, run: int
) -> tuple[float, float]:
    """Completed requests per second, and accepted (202) requests per second."""
    body = json.dumps(iris_rows(3)).encode()
    folder = server.data_dir / "objects" / "bench" / "inputs" / f"{name}-{run}"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(requests):
        (folder / f"{n}.json").write_bytes(body)
    before = _succeeded(server, name)
    started = time.perf_counter()
    _drive(
        server,
        threads,
        requests,
        lambda n: (
            "POST",
            f"/endpoints/{name}/async-invocations",
            b"",
            {
                "X-Amzn-SageMaker-InputLocation": f"s3://bench/inputs/{name}-{run}/{n}.json",
                "X-Amzn-SageMaker-Content-Type": "application/json",
            },
            202,
        ),
    )
    accepted = time.perf_counter() - started
    while _succeeded(server, name) - before < requests:
        time.sleep(0.05)  # polling costs the server CPU too; keep it rare
    return requests / (time.perf_counter() - started), requests / accepted


def large(server: ServerProcess, name: str, megabytes: int) -> dict[str, float]:
    path = server.data_dir / "objects" / "bench" / "large.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(b"block").digest() * (1024 * 1024 // 32)
    with path.open("wb") as f:
        for index in range(megabytes):
            f.write(index.to_bytes(8, "big") + block[8:])
    rss_before = peak_rss_mb(server.pid)
    runtime = server.client("sagemaker-runtime")
    started = time.perf_counter()
    answer = runtime.invoke_endpoint_async(
        EndpointName=name,
        InputLocation="s3://bench/large.bin",
        ContentType="application/octet-stream",
    )
    output = server.data_dir / "objects" / answer["OutputLocation"][len("s3://") :]
    while not output.exists():
        if _succeeded(server, name) < 0:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    result = json.loads(output.read_bytes())
    if result["bytes"] != megabytes * 1024 * 1024:
        raise RuntimeError(f"instance got {result['bytes']} bytes")
    path.unlink()
    return {
        "seconds": elapsed,
        "rss_before_mb": rss_before,
        "rss_after_mb": peak_rss_mb(server.pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument(
        "--per-instance",
        type=int,
        default=8,
        help="MaxConcurrentInvocationsPerInstance of the async endpoint",
    )
    parser.add_argument("--queue", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args()
    facts = machine_facts("python http.client threads")
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())
        scratch = stack.enter_context(scratch_dir(args.keep))
        env = {"MODELHOST_ASYNC_POLL_INTERVAL": "0.5"}
        if args.queue == "redis":
            env["MODELHOST_ASYNC_QUEUE"] = stack.enter_context(redis_server(scratch))
        server = ServerProcess(scratch / "data", env=env)
        server.start()
        try:
            iris = put_iris_model(server.data_dir)
            small_rt = deploy(server.client("sagemaker"), iris)
            small = _deploy_async(server, iris, "modelhost/sklearn", args.per_instance)
            big = _deploy_async(server, put_digest_model(server.data_dir), "modelhost/python")
            realtime(server, small_rt, args.threads, 200)  # warm up both paths
            asynchronous(server, small, args.threads, 200, run=0)
            rows = []
            for run in range(1, args.rounds + 1):  # alternate, so noise hits both alike
                rt = realtime(server, small_rt, args.threads, args.requests)
                ay, accepted = asynchronous(server, small, args.threads, args.requests, run)
                rows.append((rt, ay, accepted))
            large_run = large(server, big, args.large_mb) if args.large_mb else None
        finally:
            server.stop()
    print("# Asynchronous inference throughput\n")
    for key, value in facts.items():
        print(f"- {key}: {value}")
    print(
        f"- queue: {args.queue}; {args.requests} requests per run, {args.threads} client threads, "
        "iris LogisticRegression on one ml.m5.large per endpoint (one real-time, one "
        "asynchronous), JSON body of 3 rows\n"
    )
    print(
        "| round | real-time req/s | async req/s (completed) | async / real-time | "
        "async accepted (202) /s |"
    )
    print("|---|---|---|---|---|")
    for index, (rt, ay, accepted) in enumerate(rows, 1):
        print(f"| {index} | {rt:,.0f} | {ay:,.0f} | {ay / rt:.0%} | {accepted:,.0f} |")
    if large_run:
        print(f"\n## {args.large_mb} MiB payload end to end\n")
        print("| seconds | MB/s | server peak RSS before | after | growth |")
        print("|---|---|---|---|---|")
        print(
            f"| {large_run['seconds']:.1f} | {args.large_mb / large_run['seconds']:.0f} | "
            f"{large_run['rss_before_mb']:.0f} MB | {large_run['rss_after_mb']:.0f} MB | "
            f"{large_run['rss_after_mb'] - large_run['rss_before_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
