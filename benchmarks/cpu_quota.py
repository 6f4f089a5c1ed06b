"""CPU quotas per instance type: what an instance gets, and what the groups cost at start.

Why this shape:
- A quota is only visible next to the same work without one, so the same rounds run
  against a server with MODELHOST_CGROUPS=off and one with the default (auto), one after
  the other, both with MODELHOST_CPU_SCALE=0.25 (an ml.c5.large's 2 vCPUs are half a core,
  an ml.c5.xlarge's 4 one core: types stay apart on a 2-core machine).
- The work is one single-threaded CPU burner per type (the tests' burn model: it burns
  the CPU seconds the request names), one request at a time (never two instances at
  once), so what limits it is the quota, not a neighbour. The figure is the instance's CPU
  seconds (/proc/<pid>/stat) over the request's wall time: the cores it got.
- Creating a group and joining it is on the start path, so CreateEndpoint → InService for
  one ml.m5.large iris instance is timed on both servers too (median of --rounds).

Usage:
    python benchmarks/cpu_quota.py [--rounds 5] [--burn-s 2] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    add_output_options,
    machine_table,
    post,
    publish,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_burn_model, put_iris_model
from tests.support.processes import cpu_seconds, instance_processes
from tests.support.server import ServerProcess

SCALE = "0.25"
TYPES = ("ml.c5.large", "ml.c5.xlarge", "ml.c5.2xlarge")


def _measure(
    label: str, env: dict[str, str], scratch: Path, rounds: int, burn_s: float
) -> dict[str, Any]:
    server = ServerProcess(scratch / label, env={"MODELHOST_CPU_SCALE": SCALE, **env})
    sagemaker = None
    endpoints: list[str] = []
    try:
        print(f"[{label}] starting server ...", file=sys.stderr)
        server.start()
        sagemaker = server.client("sagemaker")
        iris = put_iris_model(server.data_dir)
        creates = []
        for _ in range(rounds):
            started = time.perf_counter()
            endpoints.append(deploy(sagemaker, iris))
            creates.append(time.perf_counter() - started)
            undeploy(sagemaker, endpoints.pop())
        burner = put_burn_model(server.data_dir)
        cores = {}
        for instance_type in TYPES:
            endpoints.append(
                deploy(sagemaker, burner, image="modelhost/python", instance_type=instance_type)
            )
            (instance,) = instance_processes(server.pid)
            url = f"{server.url}/endpoints/{endpoints[-1]}/invocations"
            before, began = cpu_seconds(instance.pid), time.perf_counter()
            status, _ = post(url, str(burn_s).encode(), "text/plain")
            wall = time.perf_counter() - began
            if status != 200:
                raise RuntimeError(f"burner on {instance_type} answered {status}")
            cores[instance_type] = (cpu_seconds(instance.pid) - before) / wall
            print(f"[{label}] {instance_type}: {cores[instance_type]:.2f} cores", file=sys.stderr)
            undeploy(sagemaker, endpoints.pop())
        return {"create": statistics.median(creates), "cores": cores}
    finally:
        if sagemaker is not None:
            for name in endpoints:
                undeploy(sagemaker, name)
        server.stop()


def report(
    results: dict[str, dict[str, Any]], machine: list[str], rounds: int, burn_s: float
) -> str:
    lines = [
        "# CPU quotas per instance type",
        "",
        *machine,
        "",
        f"MODELHOST_CPU_SCALE={SCALE}. Cores a single-threaded burner got during a "
        f"request burning {burn_s:g} CPU seconds (CPU seconds / wall seconds); "
        f"CreateEndpoint → InService "
        f"for one ml.m5.large iris instance, median of {rounds}.",
        "",
        "| server | " + " | ".join(TYPES) + " | CreateEndpoint → InService |",
        "|---|" + "---|" * (len(TYPES) + 1),
    ]
    for label, result in results.items():
        cells = " | ".join(f"{result['cores'][t]:.2f}" for t in TYPES)
        lines.append(f"| {label} | {cells} | {result['create']:.2f} s |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="CreateEndpoint timings")
    parser.add_argument("--burn-s", type=float, default=2.0, help="CPU seconds each request burns")
    add_output_options(parser, "cpu_quota")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        results = {
            "MODELHOST_CGROUPS=off": _measure(
                "off", {"MODELHOST_CGROUPS": "off"}, scratch, args.rounds, args.burn_s
            ),
            "cgroups (default)": _measure("auto", {}, scratch, args.rounds, args.burn_s),
        }
    text = report(results, machine_table("urllib, one request at a time"), args.rounds, args.burn_s)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
