"""Adaptive batching: modelhost with batching off and on, next to Ray Serve's
``@serve.batch`` and BentoML's adaptive batching, on a model where batching matters.

One command, one machine, one run. It trains a RandomForest (--trees, default 100) at run time and
serves it four ways, all up at once and measured in turns (see peers.py) with the same
open-loop load (`modelhost.loadgen`, a JSON body of one row of 20 features):

- modelhost, one process instance, batching off;
- modelhost, one process instance, ``MODELHOST_MAX_BATCH_SIZE`` (default 64, delay 5 ms);
- Ray Serve, one replica, ``@serve.batch`` with the same size and a 5 ms wait;
- BentoML, one worker, a ``batchable`` API with the same size.

For each: p50 / p99 at a low fixed rate (default 10 req/s: batching must not cost latency
there), then a ramp of steps until p99 passes the bound (default 50 ms): the highest rate
served with p99 under it, under 1% errors and at least 95% of the offered rate. Every
system has one BLAS/OpenMP thread and the forest predicts on one thread (``n_jobs=1``).
The peers are installed by peers.py in their own virtualenvs.

Usage:
    python benchmarks/batching.py [--max-batch 64] [--trees 100] [--low-rate 10] [--seconds 10]
                                  [--step-s 5] [--p99-bound-ms 50]
                                  [--systems off,on,ray,bentoml] [--cpus 0-1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from _common import machine_facts, scratch_dir, sigterm_as_interrupt
from peers import ONE_THREAD, RESULTS, SystemResult, measure, peer_server
from tests.support.endpoints import deploy, undeploy
from tests.support.models import put_model
from tests.support.server import ServerProcess

FEATURES = 20
RAMP = (10, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000, 3000, 4000)

RAY_APP = """
import os, time
import joblib, numpy as np, ray
from ray import serve
from starlette.requests import Request

CORES, SIZE = int(os.environ["CORES"]), int(os.environ["MAX_BATCH"])

@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": CORES / 2})
class Forest:
    def __init__(self):
        self.model = joblib.load(os.environ["MODEL_PATH"])

    @serve.batch(max_batch_size=SIZE, batch_wait_timeout_s=0.005)
    async def predict(self, batches):
        answers = self.model.predict(np.concatenate(batches)).tolist()
        out, start = [], 0
        for rows in batches:
            out.append(answers[start : start + len(rows)])
            start += len(rows)
        return out

    async def __call__(self, request: Request):
        return await self.predict(np.asarray(await request.json()))

ray.init(num_cpus=CORES, include_dashboard=False)
serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["PORT"])})
serve.run(Forest.bind(), route_prefix="/invocations")
while True:
    time.sleep(3600)
"""

BENTO_SERVICE = """
import os
import bentoml, joblib, numpy as np

@bentoml.service(workers=1)
class Model:
    def __init__(self):
        self.model = joblib.load(os.environ["MODEL_PATH"])

    @bentoml.api(route="/invocations", batchable=True,
                 max_batch_size=int(os.environ["MAX_BATCH"]), max_latency_ms=10000)
    def invocations(self, instances: np.ndarray) -> np.ndarray:
        return self.model.predict(instances)
"""


def train(path: Path, trees: int) -> list[float]:
    """The forest, saved to `path`; one row to send."""
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=4000, n_features=FEATURES, random_state=0)
    forest = RandomForestClassifier(n_estimators=trees, max_depth=12, n_jobs=1, random_state=0)
    joblib.dump(forest.fit(x, y), path)
    return [round(float(v), 4) for v in x[0]]


@contextlib.contextmanager
def modelhost_server(
    work: Path, model: bytes, row: list[float], batch: int | None, pin: list[str]
) -> Iterator[tuple[str, bytes, str]]:
    class Pinned(ServerProcess):
        def command(self) -> list[str]:
            return [*pin, *super().command()]

    server = Pinned(work / f"modelhost-{batch or 'off'}").start()
    sagemaker = server.client("sagemaker")
    name = None
    environment = dict(ONE_THREAD)
    if batch:
        environment["MODELHOST_MAX_BATCH_SIZE"] = str(batch)
    try:
        name = deploy(
            sagemaker,
            put_model(server.data_dir, "forest", {"model.joblib": model}),
            instance_type="ml.c5.large",
            environment=environment,
            timeout_s=180,
        )
        from importlib.metadata import version

        yield (
            f"{server.url}/endpoints/{name}/invocations",
            json.dumps([row]).encode(),
            version("modelhost"),
        )
    finally:
        if name:
            undeploy(sagemaker, name)
        server.stop()


def report(systems: list[SystemResult], args: argparse.Namespace, facts: dict[str, str]) -> str:
    lines = ["# Adaptive batching: modelhost off / on, Ray Serve, BentoML", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += [
        f"- model: RandomForestClassifier, {args.trees} trees, depth 12, "
        f"{FEATURES} features, n_jobs=1",
        f"- one replica each; max batch {args.max_batch}; cores: {args.cpus or 'all'}",
        f"- load: modelhost.loadgen open loop, one row per request, {args.seconds:g} s at "
        f"{args.low_rate:g} req/s, then {args.step_s:g} s ramp steps",
        "",
    ]
    bound = args.p99_bound_ms
    off = next((s.max_rate for s in systems if s.name == "modelhost off" and s.max_rate), None)
    header = [
        "system",
        "version",
        f"p50 @{args.low_rate:g}/s ms",
        f"p99 @{args.low_rate:g}/s ms",
        f"max req/s, p99 ≤ {bound:g} ms",
        "vs batching off",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in systems:
        if system.failure:
            lines.append(f"| {system.name} | {system.version} | failed: {system.failure} |")
            continue
        low = system.fixed[args.low_rate]
        top = f"{system.max_rate:,.0f}" if system.max_rate else "below the first step"
        ratio = f"{system.max_rate / off:.1f}x" if off and system.max_rate else "-"
        row = [
            system.name,
            system.version,
            f"{low.percentile_ms(50):.2f}",
            f"{low.percentile_ms(99):.2f}",
            top,
            ratio,
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Ramp steps (offered req/s → answered req/s, p99 ms):", ""]
    for system in systems:
        steps = ", ".join(
            f"{rate:g} → {r.throughput:.0f} ({r.percentile_ms(99):.1f})" for rate, r in system.ramp
        )
        lines.append(f"- {system.name}: {steps or '-'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--low-rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--p99-bound-ms", type=float, default=50.0)
    parser.add_argument("--systems", default="off,on,ray,bentoml")
    parser.add_argument("--cpus", default=None, help="taskset CPU list for every system")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    pin = ["taskset", "-c", args.cpus] if args.cpus else []
    cores = (
        len(os.sched_getaffinity(0))
        if not args.cpus
        else int(
            subprocess.run(
                ["taskset", "-c", args.cpus, "nproc"], capture_output=True, text=True, check=True
            ).stdout
        )
    )
    os.environ["MAX_BATCH"] = str(args.max_batch)  # read by the peers' apps
    systems: list[SystemResult] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    with sigterm_as_interrupt(), scratch_dir(args.keep) as work:
        model_path = work / "model.joblib"
        row = train(model_path, args.trees)
        model = model_path.read_bytes()
        with contextlib.ExitStack() as stack:
            running = []
            for key in args.systems.split(","):
                label = {"off": "modelhost off", "on": "modelhost on"}.get(key, key)
                system = SystemResult(label, "-")
                systems.append(system)
                print(f"starting {label} ...", file=sys.stderr, flush=True)
                try:
                    if key in ("off", "on"):
                        batch = args.max_batch if key == "on" else None
                        server = modelhost_server(work, model, row, batch, pin)
                    else:
                        app = RAY_APP if key == "ray" else BENTO_SERVICE
                        server = peer_server(key, work, model_path, 1, cores, pin, app, [row])
                    url, body, system.version = stack.enter_context(server)
                    running.append((system, url, body))
                except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                    system.failure = str(exc).splitlines()[-1][:200] if str(exc) else repr(exc)
                    print(f"{label} failed: {exc}", file=sys.stderr)
            measure(running, [args.low_rate], args.seconds, args.p99_bound_ms, RAMP, args.step_s)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = report(systems, args, machine_facts("modelhost.loadgen, open loop"))
    (RESULTS / f"batching-{stamp}.md").write_text(text)
    print(text)
    print(f"written to {RESULTS / f'batching-{stamp}.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
