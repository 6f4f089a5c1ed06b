"""What a shared state store costs: control-plane calls and InvokeEndpoint on a server
whose state is the embedded SQLite file, and on one whose state is a PostgreSQL database,
side by side in one run; then how long another server takes over an endpoint after its
owner is SIGKILLed.

Why this shape:
- Control-plane calls (DescribeEndpoint, ListModels, CreateModel) are timed one by one
  from a boto3 client with a kept-alive connection, as a user's script calls them; the
  figures include boto3's own cost, alike for both stores, so the difference between the
  columns is the store's.
- InvokeEndpoint is timed over one kept-alive raw HTTP connection (http.client), so the
  client adds as little as it can: the hot path must not touch the state store at all,
  so the two columns should agree within noise.
- The two servers run one after the other on the same machine, each with a fresh data
  dir; the PostgreSQL server is a private one (tests/support/postgres.py) on this
  machine, so the figures hold a local round trip, not a network's; it runs with
  fsync=off (the tests' setting), so a write there skips the disk flush SQLite's does.
- Takeover: two servers on one database and one S3 (moto's server), lease period
  MODELHOST_LEASE_PERIOD (the product's default unless --lease-period), an endpoint with
  one instance; the owner is SIGKILLed and the other server is invoked until it answers
  200. The time from the kill to that answer is what a client would wait.

Usage:
    python benchmarks/shared_state.py [--calls 200] [--invokes 1000] [--lease-period 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _common import machine_table, scratch_dir, sigterm_as_interrupt
from tests.support.endpoints import deploy, wait_for_status
from tests.support.models import iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/any"


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def _timed(call: Callable[[int], Any], count: int, warmup: int = 10) -> list[float]:
    for number in range(warmup):
        call(-1 - number)
    samples = []
    for number in range(count):
        started = time.perf_counter()
        call(number)
        samples.append(time.perf_counter() - started)
    return samples


def _put_iris(s3: MotoServer) -> str:
    bucket = s3.create_bucket("bench")
    s3.s3_client().put_object(
        Bucket=bucket,
        Key="iris/model.tar.gz",
        Body=model_tarball({"model.joblib": iris_model_bytes()}),
    )
    return f"s3://{bucket}/iris/model.tar.gz"


def measure_store(
    label: str, data_dir: Path, env: dict[str, str], model_url: str, calls: int, invokes: int
) -> dict[str, tuple[float, float]]:
    server = ServerProcess(data_dir, env=env, log_level="warning").start()
    try:
        sagemaker = server.client("sagemaker")
        endpoint = deploy(sagemaker, model_url)
        results = {
            "DescribeEndpoint": _percentiles(
                _timed(lambda _: sagemaker.describe_endpoint(EndpointName=endpoint), calls)
            ),
            "ListModels": _percentiles(_timed(lambda _: sagemaker.list_models(), calls)),
            "CreateModel": _percentiles(
                _timed(
                    lambda n: sagemaker.create_model(
                        ModelName=f"bench-{label}-{n + 100}",
                        ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": model_url},
                    ),
                    calls,
                )
            ),
        }
        body = json.dumps(iris_rows()).encode()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def invoke(_: int) -> None:
            connection.request(
                "POST",
                f"/endpoints/{endpoint}/invocations",
                body,
                {"Content-Type": "application/json"},
            )
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"invoke answered {answer.status}")

        results["InvokeEndpoint"] = _percentiles(_timed(invoke, invokes, warmup=50))
        connection.close()
        return results
    finally:
        server.stop()


@contextmanager
def _pair(root: Path, url: str, s3: MotoServer, lease_s: float) -> Iterator[list[ServerProcess]]:
    env = {
        "MODELHOST_STATE_URL": url,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
        "MODELHOST_LEASE_PERIOD": str(lease_s),
    }
    with ExitStack() as stack:
        servers = []
        for name in ("one", "two"):
            server = ServerProcess(root / name, env=env, log_level="warning").start()
            stack.callback(server.stop)
            servers.append(server)
        yield servers


def measure_takeover(
    root: Path, postgres: PostgresServer, s3: MotoServer, model_url: str, lease_s: float
) -> float:
    import psycopg

    url = postgres.new_database()
    with _pair(root, url, s3, lease_s) as (one, two):
        endpoint = deploy(one.client("sagemaker"), model_url)
        wait_for_status(two.client("sagemaker"), endpoint, {"InService"})
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT holder FROM leases WHERE name = %s", (f"endpoint:{endpoint}",)
            ).fetchone()
        ids = {(s.data_dir / "server-id").read_text().strip(): s for s in (one, two)}
        owner = ids.pop(row[0] if row else "")
        (other,) = ids.values()
        body = json.dumps(iris_rows()).encode()
        owner.kill()
        killed = time.monotonic()
        deadline = killed + 180
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", other.port, timeout=10)
            try:
                connection.request(
                    "POST",
                    f"/endpoints/{endpoint}/invocations",
                    body,
                    {"Content-Type": "application/json"},
                )
                answer = connection.getresponse()
                answer.read()
                if answer.status == 200:
                    return time.monotonic() - killed
            finally:
                connection.close()
            time.sleep(0.05)
        raise RuntimeError("the other server did not take the endpoint over in 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per operation")
    parser.add_argument("--invokes", type=int, default=1000, help="timed InvokeEndpoint calls")
    parser.add_argument(
        "--lease-period", type=float, default=10.0, help="MODELHOST_LEASE_PERIOD, seconds"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    with (
        sigterm_as_interrupt(),
        scratch_dir(args.keep) as root,
        postgres_server() as postgres,
        moto_server() as s3,
    ):
        model_url = _put_iris(s3)
        common = {"AWS_ENDPOINT_URL_S3": s3.endpoint_url}
        sqlite = measure_store(
            "sqlite", root / "sqlite", common, model_url, args.calls, args.invokes
        )
        pg = measure_store(
            "postgresql",
            root / "postgresql",
            {**common, "MODELHOST_STATE_URL": postgres.new_database()},
            model_url,
            args.calls,
            args.invokes,
        )
        takeover_s = measure_takeover(root / "takeover", postgres, s3, model_url, args.lease_period)
    lines = [
        *machine_table("boto3 / http.client, one connection"),
        "",
        "| call | SQLite p50 ms | SQLite p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms |",
        "|---|---|---|---|---|",
    ]
    for call in sqlite:
        (s50, s99), (p50, p99) = sqlite[call], pg[call]
        lines.append(f"| {call} | {s50:.2f} | {s99:.2f} | {p50:.2f} | {p99:.2f} |")
    lines += [
        "",
        f"{args.calls} calls per control-plane operation, {args.invokes} invocations; "
        "PostgreSQL local, fsync=off.",
        f"Takeover after SIGKILL of the endpoint's server (lease period "
        f"{args.lease_period:g} s): {takeover_s:.1f} s from the kill to the other "
        "server's first 200.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
