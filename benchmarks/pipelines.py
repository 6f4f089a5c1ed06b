"""Multi-container endpoints: what each container of a serial pipeline adds to a request,
next to the same classifier as a single-container endpoint and as a Direct container.

Why this shape:
- Three endpoints on one server, one instance each: the iris classifier alone
  (`modelhost/sklearn`); a serial pipeline of a pass-through container, the same
  classifier and another pass-through (`modelhost/python` whose `transform_fn` answers
  its body unchanged, with its content type), so the two extra hops cost what a hop
  costs and almost no model time; and that pipeline's containers in Direct mode, invoked
  with `TargetContainerHostname=classifier`, one hop like the single endpoint but through
  the multi-container path.
- One request at a time over a keep-alive http.client connection per path (what boto3
  sends, minus signing), the paths alternating so they see the same machine load;
  medians and p99 per path.

Usage:
    python benchmarks/pipelines.py [--requests 500]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from pathlib import Path

from _common import add_output_options, machine_facts, publish, scratch_dir, sigterm_as_interrupt
from tests.support.endpoints import deploy, deploy_containers, undeploy
from tests.support.models import put_iris_model, put_model
from tests.support.server import ServerProcess

PASS_THROUGH = b"""
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    return body, content_type
"""
BODY = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5"


def _once(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    connection.request("POST", path, BODY, {"Content-Type": "text/csv", **headers})
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}")
    return elapsed


def measure(requests: int, scratch: Path) -> dict[str, list[float]]:
    server = ServerProcess(scratch / "data", log_level="warning").start()
    sagemaker = server.client("sagemaker")
    names: list[str] = []
    try:
        iris = put_iris_model(server.data_dir)
        passing = put_model(server.data_dir, "pass", {"code/inference.py": PASS_THROUGH})
        containers = [
            {"ContainerHostname": "before", "Image": "modelhost/python", "ModelDataUrl": passing},
            {"ContainerHostname": "classifier", "Image": "modelhost/sklearn", "ModelDataUrl": iris},
            {"ContainerHostname": "after", "Image": "modelhost/python", "ModelDataUrl": passing},
        ]
        single = deploy(sagemaker, iris)
        names.append(single)
        serial = deploy_containers(sagemaker, containers)
        names.append(serial)
        direct = deploy_containers(sagemaker, containers, mode="Direct")
        names.append(direct)
        paths = {
            "single container": (f"/endpoints/{single}/invocations", {}),
            "serial pipeline, 3 containers": (f"/endpoints/{serial}/invocations", {}),
            "Direct, classifier": (
                f"/endpoints/{direct}/invocations",
                {"X-Amzn-SageMaker-Target-Container-Hostname": "classifier"},
            ),
        }
        connections = {
            label: http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            for label in paths
        }
        results: dict[str, list[float]] = {label: [] for label in paths}
        for label, (path, headers) in paths.items():  # warm-up
            for _ in range(20):
                _once(connections[label], path, headers)
        for _ in range(requests):
            for label, (path, headers) in paths.items():
                results[label].append(_once(connections[label], path, headers))
        for connection in connections.values():
            connection.close()
        return results
    finally:
        for name in names:
            undeploy(sagemaker, name)
        server.stop()


def report(results: dict[str, list[float]], facts: dict[str, str]) -> str:
    lines = [
        f"# Multi-container endpoints: latency per path "
        f"({len(next(iter(results.values())))} requests each, one at a time)",
        "",
        *(f"- {key}: {value}" for key, value in facts.items()),
        f"- load average (1 min) at the end of the run: {os.getloadavg()[0]:.2f}",
        "",
        "| path | p50 | p99 |",
        "|---|---|---|",
    ]
    for label, samples in results.items():
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        lines.append(
            f"| {label} | {statistics.median(samples) * 1000:.2f} ms | {p99 * 1000:.2f} ms |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per path")
    add_output_options(parser, "pipelines")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        results = measure(args.requests, scratch)
    publish(report(results, machine_facts("http.client, one request at a time")), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
