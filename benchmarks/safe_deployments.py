"""What data capture and shadow variants cost a real-time request: the same iris endpoint
without either, with data capture at 100 %, and with a slow shadow variant (a model that
sleeps --shadow-ms per request, every request copied), side by side, in one run.

Why this shape:
- Only a same-run, same-machine comparison means anything on shared machines, so the
  three endpoints' runs take turns (the order rotates each round) and the median over
  rounds is reported.
- Capture's cost on the hot path is one sampling draw and one list append, the writing is
  in the background; the added p50 over the plain endpoint is what a client sees of it.
- The shadow sleeps, so it costs no CPU: what it could add to the production path is
  queueing behind copies, which the p99 shows.
- wrk (one thread) generates the load when installed, else modelhost's own generator.

Usage:
    python benchmarks/safe_deployments.py [--duration S] [--rounds N] [--connections C]
        [--shadow-ms MS] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
from tests.support.endpoints import unique, wait_for_status
from tests.support.models import put_iris_model, put_sleep_model
from tests.support.server import ServerProcess

ROW = b"5.1,3.5,1.4,0.2"


def _variant(name: str, model: str) -> dict:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "InitialVariantWeight": 1.0,
    }


def _endpoints(server: ServerProcess, iris_url: str, sleep_url: str) -> dict[str, str]:
    sm = server.client("sagemaker")
    role = "arn:aws:iam::000000000000:role/any"
    iris, sleep = unique("iris"), unique("sleep")
    sm.create_model(
        ModelName=iris,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": iris_url},
        ExecutionRoleArn=role,
    )
    sm.create_model(
        ModelName=sleep,
        PrimaryContainer={"Image": "modelhost/python", "ModelDataUrl": sleep_url},
        ExecutionRoleArn=role,
    )
    configs = {
        "neither": {},
        "capture 100%": {
            "DataCaptureConfig": {
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "s3://capture/bench",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
            }
        },
        "slow shadow": {"ShadowProductionVariants": [_variant("Shadow", sleep)]},
    }
    names = {}
    for label, extra in configs.items():
        name = unique("bench")
        sm.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[_variant("AllTraffic", iris)], **extra
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        names[label] = name
    for name in names.values():
        wait_for_status(sm, name, {"InService"}, timeout_s=180)
    return names


def report(results: dict[str, list[LoadResult]], table: list[str], args: argparse.Namespace) -> str:
    base = median([r.p50_ms for r in results["neither"]])
    lines = [
        "# Data capture and shadow variants: real-time overhead",
        "",
        f"{args.rounds} rounds of {args.duration:g} s per endpoint, {args.connections} "
        f"connection(s), paths rotating; medians over rounds. Shadow sleeps {args.shadow_ms} ms.",
        "",
        "| endpoint | p50 ms | p99 ms | req/s | added p50 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        p50 = median([r.p50_ms for r in runs])
        lines.append(
            f"| {label} | {p50:.3f} | {median([r.p99_ms for r in runs]):.3f} | "
            f"{median([r.rps for r in runs]):.0f} | {p50 - base:+.3f} | "
            f"{sum(r.errors for r in runs)} |"
        )
    return "\n".join([*lines, "", *table, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--shadow-ms", type=float, default=50.0)
    parser.add_argument("--load-generator", default="auto", choices=("auto", "wrk", "modelhost"))
    add_output_options(parser, "safe_deployments")
    args = parser.parse_args(argv)
    results: dict[str, list[LoadResult]] = {}
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        server = ServerProcess(scratch / "data").start()
        try:
            names = _endpoints(
                server,
                put_iris_model(server.data_dir),
                put_sleep_model(server.data_dir, args.shadow_ms / 1000),
            )
            generator = LoadGenerator.choose(args.load_generator, ROW, "text/csv", Path(scratch))
            labels = list(names)
            results = {label: [] for label in labels}
            for round_index in range(args.rounds):
                order = labels[round_index % len(labels) :] + labels[: round_index % len(labels)]
                for label in order:
                    url = f"{server.url}/endpoints/{names[label]}/invocations"
                    results[label].append(generator.run(url, args.connections, args.duration))
            table = machine_table(generator.describe())
        finally:
            server.stop()
    publish(report(results, table, args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
