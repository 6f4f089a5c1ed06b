"""modelhost next to Ray Serve and BentoML: the same model, replicas, cores and load.

One command, one machine, one run: it trains the iris LogisticRegression once, serves it
with modelhost (real-time endpoint, process instances), Ray Serve and BentoML side by side
(all three up at once, measured in turns so that other load on a shared machine falls on
all alike), and drives each with modelhost's own open-loop load generator (so every
system gets exactly the same load and the same latency accounting, coordinated omission
included):

1. p50 / p99 at fixed rates (default 100 and 400 requests/s, 10 s each);
2. the highest rate of a stepped ramp (5 s per step) that each system serves with p99
   under the bound (default 50 ms), under 1% errors and at least 95% of the offered rate.

Each peer is installed by this script in its own virtualenv under
benchmarks/results/peer-venvs/ (pinned versions below; pip needs to reach PyPI once).
Every system gets the same number of replicas (default 2) on the same cores (the whole
machine unless --cpus pins all of them with taskset), and one BLAS thread per replica
(modelhost's through the model's Environment, which overrides the instance type's).
Results go to benchmarks/results/peers-<time>.md and .png.

Usage:
    python benchmarks/peers.py [--replicas 2] [--rates 100,400] [--p99-bound-ms 50]
                               [--systems modelhost,ray,bentoml] [--cpus 0-1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _common import (
    BENCHMARKS_DIR,
    machine_facts,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.endpoints import deploy, undeploy
from tests.support.models import iris_rows, put_iris_model, write_iris_tarball
from tests.support.server import ServerProcess, free_port

from modelhost.loadgen import LoadResult, LoadSpec, Phase, run

RESULTS = BENCHMARKS_DIR / "results"
VENVS = RESULTS / "peer-venvs"
MODEL_PINS = ["scikit-learn==1.9.1", "joblib==1.6.0", "numpy==2.4.6"]
PEERS = {
    "ray": ["ray[serve]==2.60.0", *MODEL_PINS],
    "bentoml": ["bentoml==1.4.40", *MODEL_PINS],
}
# BLAS threads per replica, the same for every system (as modelhost's process backend
# sets them: threads spinning in several processes on few cores ruin latency).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RAMP = (50, 100, 200, 400, 800, 1200, 1600, 2000, 2500, 3000, 4000, 5000)

RAY_APP = """
import os, time
import joblib, numpy as np, ray
from ray import serve
from starlette.requests import Request

REPLICAS, CORES = int(os.environ["REPLICAS"]), int(os.environ["CORES"])

@serve.deployment(num_replicas=REPLICAS,
                  ray_actor_options={"num_cpus": CORES / REPLICAS / 2})
class Iris:
    def __init__(self):
        self.model = joblib.load(os.environ["MODEL_PATH"])

    async def __call__(self, request: Request):
        return self.model.predict(np.asarray(await request.json())).tolist()

ray.init(num_cpus=CORES, include_dashboard=False)
serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["PORT"])})
serve.run(Iris.bind(), route_prefix="/invocations")
while True:
    time.sleep(3600)
"""

BENTO_SERVICE = """
import os
import bentoml, joblib, numpy as np

@bentoml.service(workers=int(os.environ["REPLICAS"]))
class Model:
    def __init__(self):
        self.model = joblib.load(os.environ["MODEL_PATH"])

    @bentoml.api(route="/invocations")
    def invocations(self, instances: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(instances)).tolist()
"""


@dataclass
class SystemResult:
    name: str
    version: str
    fixed: dict[float, LoadResult] = field(default_factory=dict)
    ramp: list[tuple[float, LoadResult]] = field(default_factory=list)
    max_rate: float | None = None
    failure: str | None = None


# --------------------------------------------------------------------------- peers


def ensure_venv(name: str) -> Path:
    """A virtualenv with the peer's pinned packages; reused while the pins are the same."""
    venv = VENVS / name
    marker = venv / "pins.txt"
    pins = "\n".join(PEERS[name])
    if marker.exists() and marker.read_text() == pins:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {name} into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PEERS[name]], check=True)
    marker.write_text(pins)
    return venv


def _version(venv: Path, package: str) -> str:
    output = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version('{package}'))",
        ],
        capture_output=True,
        text=True,
    )
    return output.stdout.strip() or "?"


def _wait_ready(
    url: str, body: bytes, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 240
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with (
            contextlib.suppress(OSError, urllib.error.HTTPError),
            urllib.request.urlopen(request, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"not ready in {timeout_s:.0f} s: {log.read_text(errors='replace')[-2000:]}")


@contextlib.contextmanager
def peer_server(
    name: str,
    work: Path,
    model_path: Path,
    replicas: int,
    cores: int,
    pin: list[str],
    app: str | None = None,
    rows: list[list[float]] | None = None,
) -> Iterator[tuple[str, bytes, str]]:
    """Start a peer serving `app` (Ray Serve's script or BentoML's service.py, the iris
    ones by default; the model file is $MODEL_PATH) on JSON bodies of `rows`; yields (url,
    body, version)."""
    venv = ensure_venv(name)
    port = free_port()
    env = {
        **os.environ,
        **ONE_THREAD,
        "MODEL_PATH": str(model_path),
        "REPLICAS": str(replicas),
        "CORES": str(cores),
        "PORT": str(port),
        "RAY_USAGE_STATS_ENABLED": "0",
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": "",
    }
    rows = rows or iris_rows(3)
    if name == "ray":
        (work / "ray_app.py").write_text(app or RAY_APP)
        command = [str(venv / "bin" / "python"), str(work / "ray_app.py")]
        body, version = json.dumps(rows).encode(), _version(venv, "ray")
    else:
        (work / "service.py").write_text(app or BENTO_SERVICE)
        command = [
            str(venv / "bin" / "bentoml"),
            "serve",
            "service:Model",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        body, version = json.dumps({"instances": rows}).encode(), _version(venv, "bentoml")
    log = work / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*pin, *command],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        _wait_ready(url, body, process, log)
        yield url, body, version
    finally:
        _stop_tree(process)


def _stop_tree(process: subprocess.Popen[bytes]) -> None:
    """Stop a peer and everything it started. Ray's driver starts a cluster of its own
    (GCS, raylet, workers) that may outlive it; only those processes are stopped, never
    with `ray stop`, which would end every Ray process on a shared machine."""
    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        family = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
    _, alive = psutil.wait_procs(family, timeout=10)
    for survivor in alive:
        with contextlib.suppress(psutil.Error):
            survivor.kill()


@contextlib.contextmanager
def modelhost_server(work: Path, replicas: int, pin: list[str]) -> Iterator[tuple[str, bytes, str]]:
    class Pinned(ServerProcess):
        def command(self) -> list[str]:
            return [*pin, *super().command()]

    server = Pinned(work / "modelhost").start()
    sagemaker = server.client("sagemaker")
    name = None
    try:
        name = deploy(
            sagemaker,
            put_iris_model(server.data_dir),
            instance_type="ml.c5.large",
            variants=[("AllTraffic", replicas, 1.0)],
            environment=ONE_THREAD,
            timeout_s=180,
        )
        url = f"{server.url}/endpoints/{name}/invocations"
        from importlib.metadata import version

        yield url, json.dumps(iris_rows(3)).encode(), version("modelhost")
    finally:
        if name:
            undeploy(sagemaker, name)
        server.stop()


# --------------------------------------------------------------------------- measuring


def _load(url: str, body: bytes, rate: float, seconds: float) -> LoadResult:
    return run(
        LoadSpec(
            url=url,
            phases=(Phase(seconds, rate=rate),),
            payloads=(body,),
            content_type="application/json",
            timeout_s=5.0,
        )
    )


def _passes(result: LoadResult, rate: float, bound_ms: float) -> bool:
    sent = result.completed + result.error_count
    return (
        sent > 0
        and result.error_count / sent <= 0.01
        and result.throughput >= 0.95 * rate
        and result.percentile_ms(99) <= bound_ms
    )


def measure(
    running: list[tuple[SystemResult, str, bytes]],
    rates: list[float],
    seconds: float,
    bound_ms: float,
    ramp: tuple[float, ...] = RAMP,
    step_s: float = 5.0,
) -> None:
    """Take turns: each fixed rate and each ramp step runs on every system back to back,
    so load from elsewhere on a shared machine falls on all of them alike."""
    for _, url, body in running:
        _load(url, body, 50, 2)  # warm-up: connections, caches, lazy imports
    for rate in rates:
        for system, url, body in running:
            system.fixed[rate] = _load(url, body, rate, seconds)
            print(f"  {system.name} {rate:g}/s: {system.fixed[rate].summary()}", file=sys.stderr)
    climbing = list(running)
    for rate in ramp:
        for entry in list(climbing):
            system, url, body = entry
            result = _load(url, body, rate, step_s)
            system.ramp.append((rate, result))
            print(
                f"  {system.name} ramp {rate:g}/s: p99 {result.percentile_ms(99):.2f} ms, "
                f"{result.throughput:.0f}/s, errors {dict(result.errors)}",
                file=sys.stderr,
            )
            if _passes(result, rate, bound_ms):
                system.max_rate = rate
            else:
                climbing.remove(entry)


# --------------------------------------------------------------------------- report


def report(
    systems: list[SystemResult], rates: list[float], args: argparse.Namespace, facts: dict[str, str]
) -> str:
    lines = ["# modelhost next to Ray Serve and BentoML", ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += [
        f"- replicas per system: {args.replicas}; cores: {args.cpus or 'all'}",
        f"- load: modelhost.loadgen open loop, JSON body of 3 iris rows, "
        f"{args.seconds:g} s per fixed rate, 5 s per ramp step",
        "",
    ]
    header = ["system", "version"]
    for rate in rates:
        header += [f"p50 @{rate:g}/s ms", f"p99 @{rate:g}/s ms", f"errors @{rate:g}/s"]
    header.append(f"max req/s with p99 ≤ {args.p99_bound_ms:g} ms")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in systems:
        if system.failure:
            lines.append(f"| {system.name} | {system.version} | failed: {system.failure} |")
            continue
        row = [system.name, system.version]
        for rate in rates:
            result = system.fixed[rate]
            row += [
                f"{result.percentile_ms(50):.2f}",
                f"{result.percentile_ms(99):.2f}",
                str(result.error_count),
            ]
        row.append(f"{system.max_rate:,.0f}" if system.max_rate else "below the first step")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Ramp steps (offered req/s → answered req/s, p99 ms):", ""]
    for system in systems:
        steps = ", ".join(
            f"{rate} → {r.throughput:.0f} ({r.percentile_ms(99):.1f})" for rate, r in system.ramp
        )
        lines.append(f"- {system.name}: {steps or '-'}")
    return "\n".join(lines) + "\n"


def chart(systems: list[SystemResult], bound_ms: float, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("no chart: pip install 'modelhost[plot]'", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for system in systems:
        if system.ramp:
            axes.plot(
                [r for r, _ in system.ramp],
                [max(res.percentile_ms(99), 0.01) for _, res in system.ramp],
                marker="o",
                label=f"{system.name} {system.version}",
            )
    axes.axhline(bound_ms, color="red", linestyle="--", label=f"p99 bound {bound_ms:g} ms")
    axes.set_yscale("log")
    axes.set_xlabel("offered load (requests/s, open loop)")
    axes.set_ylabel("p99 latency (ms, log scale)")
    axes.set_title("iris LogisticRegression, same replicas and cores")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rates", default="100,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--p99-bound-ms", type=float, default=50.0)
    parser.add_argument("--systems", default="modelhost,ray,bentoml")
    parser.add_argument("--cpus", default=None, help="taskset CPU list for every system")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
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
    systems: list[SystemResult] = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    with sigterm_as_interrupt(), scratch_dir(args.keep) as work:
        model_path = work / "model.joblib"
        tarball = write_iris_tarball(work / "model.tar.gz")
        with tarfile.open(tarball) as archive:
            archive.extract("model.joblib", work, filter="data")
        with contextlib.ExitStack() as stack:
            running = []
            for name in args.systems.split(","):
                system = SystemResult(name, "-")
                systems.append(system)
                print(f"starting {name} ...", file=sys.stderr, flush=True)
                try:
                    server = (
                        modelhost_server(work, args.replicas, pin)
                        if name == "modelhost"
                        else peer_server(name, work, model_path, args.replicas, cores, pin)
                    )
                    url, body, system.version = stack.enter_context(server)
                    running.append((system, url, body))
                except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                    system.failure = str(exc).splitlines()[-1][:200] if str(exc) else repr(exc)
                    print(f"{name} failed: {exc}", file=sys.stderr)
            measure(running, rates, args.seconds, args.p99_bound_ms)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = report(systems, rates, args, machine_facts("modelhost.loadgen, open loop"))
    (RESULTS / f"peers-{stamp}.md").write_text(text)
    chart(systems, args.p99_bound_ms, RESULTS / f"peers-{stamp}.png")
    print(text)
    print(f"written to {RESULTS / f'peers-{stamp}.md'} and .png", file=sys.stderr)


if __name__ == "__main__":
    main()
