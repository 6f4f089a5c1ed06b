"""What placing instances on Ray costs: the same model on the same machine through the
`process` backend and through the `ray` backend (a one-node Ray cluster the benchmark
starts, `ray.cluster_utils.Cluster`), side by side: CreateEndpoint -> InService, p50/p99
at one connection and requests/s at eight, all routed (`POST /endpoints/<name>/invocations`).

Both servers read the model from the same moto S3 server, since the ray backend's
instances download model data on their node. On one host the "network hop" is the node's
address instead of loopback; on a real cluster it is a real network, which this cannot
show.

Usage:
    python benchmarks/ray_backend.py [--duration S] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import LoadGenerator, add_output_options, machine_table, publish, scratch_dir
from tests.support.endpoints import deploy
from tests.support.models import iris_model_bytes, model_tarball
from tests.support.moto import moto_server
from tests.support.server import ServerProcess

BODY = b"5.1,3.5,1.4,0.2"


class _Server(ServerProcess):
    def __init__(self, data_dir: Path, env: dict[str, str], extra: list[str]) -> None:
        super().__init__(data_dir, env=env, log_level="warning")
        self.extra = extra

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]


def _measure(
    name: str, server: ServerProcess, model_url: str, load: LoadGenerator, duration_s: float
) -> dict[str, float | str]:
    sagemaker = server.client("sagemaker")
    started = time.monotonic()
    endpoint = deploy(sagemaker, model_url, timeout_s=300)
    in_service = time.monotonic() - started
    url = f"{server.url}/endpoints/{endpoint}/invocations"
    load.run(url, 1, 1)  # warm the connections and the model
    one = load.run(url, 1, duration_s)
    eight = load.run(url, 8, duration_s)
    return {
        "backend": name,
        "in_service_s": in_service,
        "p50_ms": one.p50_ms,
        "p99_ms": one.p99_ms,
        "rps_8": eight.rps,
        "errors": one.errors + eight.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    add_output_options(parser, "ray_backend")
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    rows = []
    with scratch_dir(args.keep_data) as work, moto_server() as s3:
        bucket = s3.create_bucket("bench")
        s3.s3_client().put_object(
            Bucket=bucket,
            Key="iris/model.tar.gz",
            Body=model_tarball({"model.joblib": iris_model_bytes()}),
        )
        model_url = f"s3://{bucket}/iris/model.tar.gz"
        env = {"AWS_ENDPOINT_URL_S3": s3.endpoint_url}
        load = LoadGenerator.choose("auto", BODY, "text/csv", work)
        process = _Server(work / "process-data", env, []).start()
        try:
            rows.append(_measure("process", process, model_url, load, args.duration))
        finally:
            process.stop()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
        try:
            ray_server = _Server(
                work / "ray-data",
                env,
                ["--instance-backend", "ray", "--ray-address", cluster.address],
            ).start(timeout_s=120)
            try:
                rows.append(_measure("ray", ray_server, model_url, load, args.duration))
            finally:
                ray_server.stop()
        finally:
            cluster.shutdown()

    lines = [
        "# Process vs Ray instance backend (same model, same machine, routed)",
        "",
        *machine_table(load.describe()),
        "",
        "| backend | CreateEndpoint -> InService | p50 @1 | p99 @1 | req/s @8 | errors |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['backend']} | {r['in_service_s']:.1f} s | {r['p50_ms']:.2f} ms | "
            f"{r['p99_ms']:.2f} ms | {r['rps_8']:,.0f} | {r['errors']} |"
            for r in rows
        ),
        "",
        f"{args.duration:g} s per load run, one ml.m5.large instance each.",
    ]
    publish("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
