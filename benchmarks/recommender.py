"""What a recommendation job finds and what it costs: one job, three candidates.

Starts a server, puts the iris LogisticRegression and a tar.gz of sample payloads in its
object store, runs one Advanced CreateInferenceRecommendationsJob over ml.c5.large,
ml.m5.large and ml.c5.xlarge with closed-loop traffic of 1, 2, 4 and 8 users (--seconds
each) and a P95 bound, and prints, per candidate, the metrics SageMaker's API returns
next to the time the job spent deploying, load testing and deleting its temporary
endpoint. Writes the latency-vs-throughput chart next to the report.

Usage:
    python benchmarks/recommender.py [--seconds 5] [--p95-ms 20]
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from _common import (
    BENCHMARKS_DIR,
    machine_facts,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.models import iris_rows, model_tarball, put_iris_model
from tests.support.server import ServerProcess

CANDIDATES = ("ml.c5.large", "ml.m5.large", "ml.c5.xlarge")
USERS = (1, 2, 4, 8)
ROLE = "arn:aws:iam::000000000000:role/bench"


def _payloads() -> bytes:
    return model_tarball(
        {f"{i}.csv": ",".join(str(v) for v in row).encode() for i, row in enumerate(iris_rows(3))}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--p95-ms", type=int, default=20)
    args = parser.parse_args()
    with sigterm_as_interrupt(), scratch_dir(False) as work:
        server = ServerProcess(work / "data").start()
        try:
            sm = server.client("sagemaker")
            model_url = put_iris_model(server.data_dir)
            payloads = server.data_dir / "objects" / "bench" / "payloads.tar.gz"
            payloads.parent.mkdir(parents=True, exist_ok=True)
            payloads.write_bytes(_payloads())
            sm.create_model(
                ModelName="iris",
                ExecutionRoleArn=ROLE,
                PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": model_url},
            )
            started = time.monotonic()
            sm.create_inference_recommendations_job(
                JobName="bench",
                JobType="Advanced",
                RoleArn=ROLE,
                InputConfig={
                    "ModelName": "iris",
                    "ContainerConfig": {
                        "PayloadConfig": {
                            "SamplePayloadUrl": "s3://bench/payloads.tar.gz",
                            "SupportedContentTypes": ["text/csv"],
                        }
                    },
                    "EndpointConfigurations": [{"InstanceType": t} for t in CANDIDATES],
                    "TrafficPattern": {
                        "TrafficType": "PHASES",
                        "Phases": [
                            {
                                "InitialNumberOfUsers": u,
                                "SpawnRate": 0,
                                "DurationInSeconds": args.seconds,
                            }
                            for u in USERS
                        ],
                    },
                },
                StoppingConditions={
                    "ModelLatencyThresholds": [
                        {"Percentile": "P95", "ValueInMilliseconds": args.p95_ms}
                    ]
                },
            )
            while (job := sm.describe_inference_recommendations_job(JobName="bench"))[
                "Status"
            ] not in ("COMPLETED", "FAILED", "STOPPED"):
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            steps = sm.list_inference_recommendations_job_steps(JobName="bench")["Steps"]
            with urllib.request.urlopen(
                f"{server.url}/inference-recommendations-jobs/bench/load-curves"
            ) as r:
                curves = json.load(r)
        finally:
            server.stop()
    for key, value in machine_facts("modelhost.loadgen (closed loop, inside the job)").items():
        print(f"- {key}: {value}")
    print(
        f"- job: {job['Status']} in {elapsed:.1f} s; {len(USERS)} traffic steps of "
        f"{args.seconds} s per candidate; P95 bound {args.p95_ms} ms"
    )
    best = job.get("InferenceRecommendations", [{}])[0].get("EndpointConfiguration", {})
    print(
        "\n| candidate | recommended | $/hour | max invocations/min | P95 ms | CPU % | "
        "memory % | setup s | load-tested s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for step, curve in zip(steps, curves["Candidates"], strict=True):
        bench = step["InferenceBenchmark"]
        m = bench.get("Metrics", {})
        tested = (
            (bench["InvocationEndTime"] - bench["InvocationStartTime"]).total_seconds()
            if "InvocationEndTime" in bench
            else float("nan")
        )
        kind = bench["EndpointConfiguration"]["InstanceType"]
        print(
            f"| {kind} | {'yes' if kind == best.get('InstanceType') else ''} | "
            f"{m.get('CostPerHour', 0):.3f} | {m.get('MaxInvocations', 0):,} | "
            f"{m.get('ModelLatency', '-')} | {m.get('CpuUtilization', 0):.0f} | "
            f"{m.get('MemoryUtilization', 0):.1f} | {m.get('ModelSetupTime', '-')} | "
            f"{tested:.1f} |"
        )
        print(
            "|   | steps (users: req/s, P95 ms) | "
            + ", ".join(
                f"{p['users']}: {p['throughput_rps']:.0f}, {p['latency_ms']:.2f}"
                for p in curve["Points"]
            )
            + " ||||||"
        )
    try:
        from modelhost.cli.recommendation_chart import write_chart

        path = BENCHMARKS_DIR / "results" / f"recommender-{time.strftime('%Y%m%d-%H%M%S')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_chart(curves, best.get("InstanceType"), path)
        print(f"\nchart: {path}")
    except ImportError as exc:
        print(f"\nno chart: {exc}")


if __name__ == "__main__":
    main()
