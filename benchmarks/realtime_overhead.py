"""What the modelhost router hop costs: the same model served by a hand-written uvicorn +
starlette server (the reference: what a user would write instead), by the endpoint's model
server called directly, and through `POST /endpoints/<name>/invocations`, side by side, in
one run on one machine.

Why this shape:
- Only a same-run, same-machine comparison means anything on shared 2-core machines, so
  the paths' runs take turns (the order rotates each round) and the median over rounds is
  reported: noise hits every path alike.
- The reference (benchmarks/_reference.py) loads the same model file and calls it on its
  event loop; the hop target is phrased against it, since that is what a user compares.
- The direct target is the endpoint's model server without the router: an instance the
  benchmark starts itself through modelhost's own instance backend, like the server's
  (same fork server, confinement and instance type, the very model folder the server
  unpacked), because an instance answers only requests carrying its token, which only
  the process that started it holds. Requests to it carry that token, as the router's
  do, so the difference is the hop alone.
- wrk (C, one thread) generates the load because a Python generator would take a core
  from the system under test; the fallback is `python -m modelhost.loadgen` (closed
  loop) in its own process.
- The OverheadLatency target is phrased on the server's own histogram, so its p50
  is estimated from `/metrics` bucket deltas of each routed run and shown with its bucket.
- CPU seconds of the server, the instance and the generator are read from /proc around
  each run: CPU per request says where the cost is, and cores in use say whether the
  machine, not the software, was the limit.

- `--signed` starts the server with MODELHOST_ACCESS_KEYS and sends the routed requests
  SigV4-signed (one signature per run, replayed; the server verifies it in full on every
  request, body hash included), /metrics read with MODELHOST_METRICS_TOKEN: compare the
  routed figures of a run with and without it for what authentication costs.

Usage:
    python benchmarks/realtime_overhead.py [--duration S] [--connections 1,8] [--signed]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from _common import (
    BENCHMARKS_DIR,
    EMPTY_HISTOGRAM,
    HistogramSnapshot,
    LoadGenerator,
    LoadResult,
    machine_facts,
    median,
    post,
    read_histogram,
    scratch_dir,
    sigterm_as_interrupt,
)
from _direct import DirectInstance, endpoint_model_dir
from _reference import ReferenceServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from tests.support.aws import TEST_ENV
from tests.support.endpoints import deploy, undeploy
from tests.support.models import iris_rows, put_iris_model
from tests.support.processes import (
    InstanceProcess,
    cpu_seconds,
    instance_processes,
    machine_busy_seconds,
)
from tests.support.server import ServerProcess

CONTENT_TYPE = "application/json"
OVERHEAD_METRIC = "modelhost_overhead_latency_seconds"
MODEL_METRIC = "modelhost_model_latency_seconds"
REFERENCE, DIRECT, ROUTED = "uvicorn + starlette", "direct", "via modelhost"
PATHS = (REFERENCE, DIRECT, ROUTED)

# The real-time path's targets: the server's OverheadLatency and the routed share of the
# direct throughput; and ARCHITECTURE.md's "Performance targets" for the hop itself.
OVERHEAD_P50_TARGET_MS = 1.0
THROUGHPUT_RATIO_TARGET = 0.70
THROUGHPUT_TARGET_CONNECTIONS = 8
HOP_TARGET_MS = 0.25
# The router hop against the reference: p50 at one connection, throughput at eight.
REFERENCE_THROUGHPUT_TARGET = 1.0
# Other load (cores) above which the report warns that the machine was not quiet.
NOISE_WARNING_CORES = 0.2


@dataclass
class Run:
    """One load-generator run against one path, with the CPU each process spent on it."""

    round: int
    path: str
    connections: int
    load: LoadResult
    server_cpu_s: float
    instance_cpu_s: float
    machine_cpu_s: float
    overhead: HistogramSnapshot = EMPTY_HISTOGRAM
    model: HistogramSnapshot = EMPTY_HISTOGRAM


@dataclass
class Summary:
    """Medians over rounds for one (path, connections) cell."""

    p50_ms: float
    p99_ms: float
    rps: float
    server_us_per_req: float
    instance_us_per_req: float
    generator_us_per_req: float
    cores_busy: float
    other_cores_busy: float
    ceiling_rps: float
    errors: int
    runs: list[Run] = field(default_factory=list)


class Bench:
    """The two URLs of one endpoint and how to measure a run against either."""

    def __init__(
        self,
        server: ServerProcess,
        routed: InstanceProcess,
        direct: DirectInstance,
        reference: ReferenceServer,
        endpoint: str,
        generator: LoadGenerator,
        body: bytes,
        signed: bool = False,
    ) -> None:
        self.server = server
        self.body = body
        self.signed = signed
        self.direct = direct
        self.endpoint = endpoint
        self.generator = generator
        self.urls = {
            REFERENCE: f"{reference.url}/invocations",
            DIRECT: f"{direct.url}/invocations",
            ROUTED: f"{server.url}/endpoints/{endpoint}/invocations",
        }
        # The model server each path ends at, for its CPU readings.
        self.instance_pids = {REFERENCE: reference.pid, DIRECT: direct.pid, ROUTED: routed.pid}

    def headers(self, path: str) -> dict[str, str]:
        """The direct path's instance token; for the routed path, when `signed`, a fresh
        SigV4 signature (valid for the server's 15-minute window, so each run signs
        anew)."""
        if path == DIRECT:
            return self.direct.headers
        if path == REFERENCE:
            return {}
        if not self.signed:
            return {}
        request = AWSRequest(
            "POST", self.urls[ROUTED], data=self.body, headers={"Content-Type": CONTENT_TYPE}
        )
        SigV4Auth(
            Credentials(TEST_ENV["AWS_ACCESS_KEY_ID"], TEST_ENV["AWS_SECRET_ACCESS_KEY"]),
            "sagemaker",
            TEST_ENV["AWS_DEFAULT_REGION"],
        ).add_auth(request)
        return {k: v for k, v in request.headers.items() if k != "Content-Type"}

    def _overhead_and_model(self) -> tuple[HistogramSnapshot, HistogramSnapshot]:
        text = self.server.metrics_text()
        labels = {"endpoint": self.endpoint, "variant": "AllTraffic"}
        return (
            read_histogram(text, OVERHEAD_METRIC, labels),
            read_histogram(text, MODEL_METRIC, labels),
        )

    def measure(self, path: str, connections: int, duration_s: float, round_: int) -> Run:
        before = self._overhead_and_model() if path == ROUTED else None
        server_cpu = cpu_seconds(self.server.pid)
        instance_pid = self.instance_pids[path]
        instance_cpu = cpu_seconds(instance_pid)
        machine_cpu = machine_busy_seconds()
        load = self.generator.run(self.urls[path], connections, duration_s, self.headers(path))
        run = Run(
            round_,
            path,
            connections,
            load,
            server_cpu_s=cpu_seconds(self.server.pid) - server_cpu,
            instance_cpu_s=cpu_seconds(instance_pid) - instance_cpu,
            machine_cpu_s=machine_busy_seconds() - machine_cpu,
        )
        if before is not None:
            after = self._overhead_and_model()
            run.overhead = after[0] - before[0]
            run.model = after[1] - before[1]
        return run


def _other_load(run: Run) -> float:
    ours = run.server_cpu_s + run.instance_cpu_s + run.load.extra.get("generator_cpu_s", 0.0)
    return max(run.machine_cpu_s - ours, 0.0) / run.load.duration_s


def cpu_ceiling(server_s: float, instance_s: float, generator_s: float) -> float:
    """Requests/s this path could reach on an otherwise idle machine if CPU were the only
    limit: each single-threaded process gets at most one core, all of them share nproc.

    A companion to measured req/s on shared machines: CPU seconds per request barely move
    when other load steals cores, throughput does. It is an upper bound: a path that stays
    well below it on a quiet machine is limited by its chain of wake-ups, not by CPU.
    """
    cores = len(os.sched_getaffinity(0))
    per_process = max(server_s, instance_s, generator_s)
    total = server_s + instance_s + generator_s
    if not per_process:
        return math.nan
    return min(1.0 / per_process, cores / total)


def summarise(runs: list[Run]) -> Summary:
    requests = sum(r.load.requests for r in runs) or 1
    seconds = sum(r.load.duration_s for r in runs) or 1.0
    generator_cpu = sum(r.load.extra.get("generator_cpu_s", 0.0) for r in runs)
    server_cpu = sum(r.server_cpu_s for r in runs)
    instance_cpu = sum(r.instance_cpu_s for r in runs)
    ours = server_cpu + instance_cpu + generator_cpu
    machine = sum(r.machine_cpu_s for r in runs)
    return Summary(
        p50_ms=median([r.load.p50_ms for r in runs]),
        p99_ms=median([r.load.p99_ms for r in runs]),
        rps=median([r.load.rps for r in runs]),
        server_us_per_req=server_cpu / requests * 1e6,
        instance_us_per_req=instance_cpu / requests * 1e6,
        generator_us_per_req=generator_cpu / requests * 1e6,
        cores_busy=ours / seconds,
        other_cores_busy=max(machine - ours, 0.0) / seconds,
        ceiling_rps=cpu_ceiling(
            server_cpu / requests, instance_cpu / requests, generator_cpu / requests
        ),
        errors=sum(r.load.errors for r in runs),
        runs=runs,
    )


def _histogram_sum(runs: list[Run], attr: str) -> HistogramSnapshot:
    total = EMPTY_HISTOGRAM
    for run in runs:
        part: HistogramSnapshot = getattr(run, attr)
        total = part if not total.buckets else total + part
    return total


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _p50_text(histogram: HistogramSnapshot) -> str:
    """Interpolating inside the first bucket (0 to its bound) invents a number; say '<'."""
    if not histogram.count:
        return "n/a"
    low, high = histogram.bucket_of(0.5)
    if low == 0.0:
        return f"< {high * 1e3:g}"
    return f"{histogram.quantile(0.5) * 1e3:.3f}"


def _p50_bound_ms(histogram: HistogramSnapshot) -> float:
    """The p50 used for a verdict: the first bucket's bound when it holds the median."""
    if not histogram.count:
        return math.nan
    low, high = histogram.bucket_of(0.5)
    return high * 1e3 if low == 0.0 else histogram.quantile(0.5) * 1e3


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(
    facts: dict[str, str], args: argparse.Namespace, cells: dict[tuple[str, int], Summary]
) -> str:
    conns: list[int] = args.connections
    out = ["# modelhost real-time overhead: reference, direct and via the router", ""]
    out.append(
        f"iris LogisticRegression (sklearn), JSON body of 3 rows; reference: uvicorn + "
        f"starlette with the model in-process (one BLAS thread); one ml.m5.large "
        f"instance per modelhost path (direct: one the benchmark started through the same "
        f"instance backend, on the same model folder, called with its token); "
        f"routed requests {'SigV4-signed' if args.signed else 'unsigned'}; "
        f"model Environment {' '.join(args.model_env) or 'default'}; "
        f"{args.rounds} alternating rounds of {args.duration:g} s per cell "
        f"after {args.warmup:g} s warm-up; medians over rounds."
    )
    out.append("")
    out.append(_table(["machine", ""], [[k, v] for k, v in facts.items()]))
    out.append("")
    noise = max(s.other_cores_busy for s in cells.values())
    if noise > NOISE_WARNING_CORES:
        out.append(
            f"**Warning:** other processes kept up to {noise:.2f} cores busy during "
            "the runs; absolute numbers are skewed (the alternation keeps the "
            "comparison fair only on average)."
        )
        out.append("")

    out.append("## Latency and throughput")
    out.append("")
    header = ["path"]
    for c in conns:
        header += [f"c={c} p50 ms", f"c={c} p99 ms", f"c={c} req/s"]
    rows = []
    for path in PATHS:
        row = [path]
        for c in conns:
            s = cells[path, c]
            row += [_ms(s.p50_ms), _ms(s.p99_ms), f"{s.rps:,.0f}"]
        rows.append(row)
    ratio_row = ["routed vs direct"]
    for c in conns:
        d, r = cells[DIRECT, c], cells[ROUTED, c]
        ratio_row += [
            f"+{r.p50_ms - d.p50_ms:.3f}",
            f"+{r.p99_ms - d.p99_ms:.3f}",
            f"{r.rps / d.rps:.0%}" if d.rps else "n/a",
        ]
    rows.append(ratio_row)
    reference_row = ["routed vs reference"]
    for c in conns:
        f, r = cells[REFERENCE, c], cells[ROUTED, c]
        reference_row += [
            f"+{r.p50_ms - f.p50_ms:.3f}",
            f"+{r.p99_ms - f.p99_ms:.3f}",
            f"{r.rps / f.rps:.2f}x" if f.rps else "n/a",
        ]
    rows.append(reference_row)
    out.append(_table(header, rows))
    out.append("")

    out.append("## Server-side histograms (routed runs, /metrics bucket deltas)")
    out.append("")
    out.append(
        "OverheadLatency = server time minus the router's own timing of the instance "
        "call; it does not include HTTP parsing before the app is called or the "
        "write of the response. p50 is interpolated inside its bucket (bucket shown)."
    )
    out.append("")
    hist_rows = []
    overhead_by_c: dict[int, HistogramSnapshot] = {}
    for c in conns:
        runs = cells[ROUTED, c].runs
        overhead = _histogram_sum(runs, "overhead")
        model = _histogram_sum(runs, "model")
        overhead_by_c[c] = overhead
        low, high = overhead.bucket_of(0.5) if overhead.count else (math.nan, math.nan)
        hist_rows.append(
            [
                str(c),
                f"{overhead.count:,.0f}",
                _p50_text(overhead),
                f"{low * 1e3:g}-{high * 1e3:g}",
                _ms(overhead.quantile(0.99) * 1e3),
                _ms(overhead.mean * 1e3),
                _ms(model.quantile(0.5) * 1e3),
                _ms(model.mean * 1e3),
            ]
        )
    out.append(
        _table(
            [
                "c",
                "samples",
                "Overhead p50 ms (est.)",
                "p50 bucket ms",
                "Overhead p99 ms (est.)",
                "Overhead mean ms",
                "ModelLatency p50 ms",
                "ModelLatency mean ms",
            ],
            hist_rows,
        )
    )
    out.append("")

    out.append("## CPU per request (from /proc, summed over rounds)")
    out.append("")
    cpu_rows = []
    for c in conns:
        for path in PATHS:
            s = cells[path, c]
            cpu_rows.append(
                [
                    path,
                    str(c),
                    f"{s.server_us_per_req:.0f}",
                    f"{s.instance_us_per_req:.0f}",
                    f"{s.generator_us_per_req:.0f}",
                    f"{s.ceiling_rps:,.0f}",
                    f"{s.cores_busy:.2f}",
                    f"{s.other_cores_busy:.2f}",
                    str(s.errors),
                ]
            )
    out.append(
        "instance µs/req is the reference server's own for the reference path. "
        "CPU ceiling: req/s if CPU were the only limit on this machine when otherwise "
        "idle (each process ≤ 1 core, all share nproc). cores busy: server + instance + "
        "load generator; other load: the rest of the machine's busy time during the "
        "same runs (noise if not ~0). Measured req/s well below the ceiling with no other "
        "load means the path waits on wake-ups, not on CPU."
    )
    out.append("")
    out.append(
        _table(
            [
                "path",
                "c",
                "server µs/req",
                "instance µs/req",
                "generator µs/req",
                "CPU ceiling req/s",
                "cores busy",
                "other load (cores)",
                "errors",
            ],
            cpu_rows,
        )
    )
    out.append("")

    out.append("## Targets")
    out.append("")
    latency_c = 1 if 1 in conns else min(conns)
    throughput_c = (
        THROUGHPUT_TARGET_CONNECTIONS if THROUGHPUT_TARGET_CONNECTIONS in conns else max(conns)
    )
    overhead = overhead_by_c[latency_c]
    overhead_p50 = _p50_bound_ms(overhead)
    d, r = cells[DIRECT, throughput_c], cells[ROUTED, throughput_c]
    ratio = r.rps / d.rps if d.rps else math.nan
    hop = cells[ROUTED, latency_c].p50_ms - cells[DIRECT, latency_c].p50_ms
    over_reference = cells[ROUTED, latency_c].p50_ms - cells[REFERENCE, latency_c].p50_ms
    f = cells[REFERENCE, throughput_c]
    reference_ratio = r.rps / f.rps if f.rps else math.nan
    target_rows = [
        [
            f"OverheadLatency p50 ≤ {OVERHEAD_P50_TARGET_MS:g} ms (histogram, c={latency_c})",
            f"{_p50_text(overhead)} ms (mean {overhead.mean * 1e3:.3f} ms)",
            _verdict(overhead_p50 <= OVERHEAD_P50_TARGET_MS),
        ],
        [
            f"throughput via router ≥ {THROUGHPUT_RATIO_TARGET:.0%} of direct (c={throughput_c})",
            f"{ratio:.0%} ({r.rps:,.0f} vs {d.rps:,.0f} req/s)",
            _verdict(ratio >= THROUGHPUT_RATIO_TARGET),
        ],
        [
            f"(upper bound) throughput ratio from CPU ceilings (c={throughput_c})",
            f"{r.ceiling_rps / d.ceiling_rps:.0%} ({r.ceiling_rps:,.0f} vs "
            f"{d.ceiling_rps:,.0f} req/s)",
            _verdict(r.ceiling_rps / d.ceiling_rps >= THROUGHPUT_RATIO_TARGET),
        ],
        [
            f"ARCHITECTURE.md: router hop adds ≤ {HOP_TARGET_MS:g} ms p50 end to end "
            f"(c={latency_c})",
            f"+{hop:.3f} ms",
            _verdict(hop <= HOP_TARGET_MS),
        ],
        [
            f"router hop ≤ {HOP_TARGET_MS:g} ms p50 over uvicorn + starlette (c={latency_c})",
            f"+{over_reference:.3f} ms",
            _verdict(over_reference <= HOP_TARGET_MS),
        ],
        [
            f"throughput via router ≥ {REFERENCE_THROUGHPUT_TARGET:g}x uvicorn + starlette "
            f"(c={throughput_c})",
            f"{reference_ratio:.2f}x ({r.rps:,.0f} vs {f.rps:,.0f} req/s)",
            _verdict(reference_ratio >= REFERENCE_THROUGHPUT_TARGET),
        ],
    ]
    out.append(_table(["target", "measured", "result"], target_rows))
    out.append("")

    out.append("## Every run")
    out.append("")
    run_rows = []
    for (path, c), s in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        for run in s.runs:
            run_rows.append(
                [
                    str(run.round),
                    path,
                    str(c),
                    _ms(run.load.p50_ms),
                    _ms(run.load.p99_ms),
                    f"{run.load.rps:,.0f}",
                    f"{run.server_cpu_s:.2f}",
                    f"{run.instance_cpu_s:.2f}",
                    f"{run.machine_cpu_s:.2f}",
                    str(run.load.errors),
                ]
            )
    out.append(
        _table(
            [
                "round",
                "path",
                "c",
                "p50 ms",
                "p99 ms",
                "req/s",
                "server CPU s",
                "instance CPU s",
                "machine CPU s",
                "errors",
            ],
            run_rows,
        )
    )
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- profiling


def profile(bench: Bench, connections: int, duration_s: float, out_dir: Path) -> str:
    """py-spy both processes during one extra routed run; top frames as Markdown.

    Sampling (not instrumentation) keeps the hot path unchanged; `--nonblocking` avoids
    pausing the target at every sample, at some cost in stack accuracy.
    """
    # on PATH, or beside this interpreter (the dev extra installs it into the venv)
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        return "py-spy not found (`pip install -e '.[dev]'`); no profile taken.\n"
    outputs = {"server": bench.server.pid, "instance": bench.instance_pids[ROUTED]}
    spies = {}
    for name, pid in outputs.items():
        raw = out_dir / f"profile-{name}.txt"
        spies[name] = (
            raw,
            subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    f"{math.ceil(duration_s)}",
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            ),
        )
    time.sleep(0.5)  # let py-spy attach before the load starts
    run = bench.measure(ROUTED, connections, duration_s, round_=0)
    lines = [
        f"## Profile: routed run, c={connections}, {run.load.rps:,.0f} req/s "
        "(py-spy, 250 Hz, --nonblocking, idle frames excluded)",
        "",
        "py-spy charges native and kernel time to the nearest Python frame: the self "
        "time of `Runner.run` is uvloop's C loop (epoll, socket reads, callbacks), and "
        "that of the frames that write (the server's `_Invocation._reply` to the client "
        "and `_Connection.exchange` to the instance, the instance's `HttpProtocol.write`) "
        "is mostly the write() syscall. Sampling slows the process a little; compare shares, not "
        "req/s.",
        "",
    ]
    for name, (raw, process) in spies.items():
        _, stderr = process.communicate(timeout=duration_s + 30)
        if not raw.exists():
            lines += [f"{name}: py-spy failed: {stderr.decode(errors='replace')[-500:]}", ""]
            continue
        lines += [f"### {name} (pid {outputs[name]})", "", _top_frames(raw), ""]
    return "\n".join(lines)


def _top_frames(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function out of py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "(no samples)"
    rows = [
        [f"{n / total:.1%}", f"{inclusive[f] / total:.1%}", f"`{f}`"]
        for f, n in self_counts.most_common(top)
    ]
    cumulative = [
        [f"{n / total:.1%}", f"`{f}`"] for f, n in inclusive.most_common() if not _is_entry_frame(f)
    ][:top]
    return (
        f"{total:,} samples.\n\n"
        + _table(["self", "incl.", "function"], rows)
        + "\n\nInclusive:\n\n"
        + _table(["incl.", "function"], cumulative)
    )


_ENTRY_FRAMES = (
    "(<frozen runpy>)",
    "(typer/",
    "(click/",
    "(threading.py)",
    "(uvicorn/main.py)",
    "(uvicorn/server.py)",
    "(uvicorn/_compat.py)",
    "(modelhost/cli/server.py)",
    "(modelhost/__main__.py)",
    "(modelhost/modelserver/__main__.py)",
    "(modelhost/modelserver/server.py)",
)


def _is_entry_frame(frame: str) -> bool:
    """Start-up frames every sample shares; they would fill the inclusive table."""
    return any(marker in frame for marker in _ENTRY_FRAMES)


def _short(frame: str) -> str:
    """`handle (aiohttp/client.py:123)` → `handle (aiohttp/client.py)`: lines split counts."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "src/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


# --------------------------------------------------------------------------- main


def _name_value(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise SystemExit(f"--model-env {text!r}: expected NAME=VALUE")
    return name, value


def _parse_connections(text: str) -> list[int]:
    values = sorted({int(part) for part in text.split(",") if part.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("connections must be positive integers, e.g. 1,8")
    return values


def _out_path(value: str) -> Path:
    path = Path(value)
    return path if path.suffix == ".md" else path / "realtime_overhead.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument(
        "--connections",
        type=_parse_connections,
        default=[1, 8],
        help="comma-separated concurrency levels (default 1,8)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per path")
    parser.add_argument(
        "--out",
        type=_out_path,
        default=BENCHMARKS_DIR / "results" / "realtime_overhead.md",
        help="Markdown file, or a folder for realtime_overhead.md",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "modelhost"), default="auto")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the rounds, py-spy the server and the instance during "
        "one more routed run at the highest concurrency",
    )
    parser.add_argument(
        "--signed",
        action="store_true",
        help="require SigV4 (MODELHOST_ACCESS_KEYS) and sign routed requests",
    )
    parser.add_argument(
        "--model-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable of the model's container Environment, for both modelhost paths "
        "(e.g. MODELHOST_INLINE_CALL_MS=0 to keep every model call on a worker thread)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")
    args = parser.parse_args(argv)
    environment = dict(_name_value(item) for item in args.model_env)

    body = orjson.dumps(iris_rows(3))
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        generator = LoadGenerator.choose(args.loadgen, body, CONTENT_TYPE, scratch)
        auth = {
            "MODELHOST_ACCESS_KEYS": f"{TEST_ENV['AWS_ACCESS_KEY_ID']}:"
            f"{TEST_ENV['AWS_SECRET_ACCESS_KEY']}",
            "MODELHOST_METRICS_TOKEN": "benchmark-metrics-token",
        }
        server = ServerProcess(scratch / "data", env=auth if args.signed else None)
        direct: DirectInstance | None = None
        reference: ReferenceServer | None = None
        endpoint: str | None = None
        sagemaker = None
        try:
            print(f"starting modelhost server on port {server.port} ...", file=sys.stderr)
            server.start()
            sagemaker = server.client("sagemaker")
            model_url = put_iris_model(server.data_dir)
            started = time.monotonic()
            endpoint = deploy(sagemaker, model_url, environment=environment)
            print(
                f"endpoint {endpoint} InService in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
            instances = instance_processes(server.pid)
            if len(instances) != 1:
                raise RuntimeError(f"expected one instance process, found {instances}")
            direct = DirectInstance(
                endpoint_model_dir(server.data_dir, endpoint),
                "sklearn",
                scratch / "direct",
                environment=environment,
            ).start()
            print(f"direct instance on port {direct.port}", file=sys.stderr)
            reference = ReferenceServer(
                endpoint_model_dir(server.data_dir, endpoint), scratch / "reference"
            ).start(body, CONTENT_TYPE)
            print(f"uvicorn + starlette reference on port {reference.port}", file=sys.stderr)
            bench = Bench(
                server, instances[0], direct, reference, endpoint, generator, body, args.signed
            )
            _check_same_answer(bench, body)
            report = _run_rounds(bench, args, generator)
            if args.profile:
                report += "\n" + profile(
                    bench, max(args.connections), args.duration, args.out.parent
                )
        except Exception:
            print(
                f"--- server log tail ({server.log_path}) ---\n{server.log_tail()}", file=sys.stderr
            )
            if direct is not None:
                print(f"--- direct instance log tail ---\n{direct.log_tail()}", file=sys.stderr)
            if reference is not None:
                print(f"--- reference log tail ---\n{reference.log_tail()}", file=sys.stderr)
            raise
        finally:
            print("cleaning up ...", file=sys.stderr)
            if reference is not None:
                reference.stop()
            if direct is not None:
                direct.stop()
            if (
                endpoint is not None
                and sagemaker is not None
                and server.process is not None
                and server.process.poll() is None
            ):
                undeploy(sagemaker, endpoint)
            server.stop()
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


def _check_same_answer(bench: Bench, body: bytes) -> None:
    """Every path must give the same prediction, or the comparison is meaningless."""
    answers = {
        path: post(url, body, CONTENT_TYPE, bench.headers(path)) for path, url in bench.urls.items()
    }
    for path, (status, payload) in answers.items():
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {payload[:300]!r}")
    # Decoded: the reference's JSON may be spaced differently from the model server's.
    if len({orjson.dumps(orjson.loads(payload)) for _, payload in answers.values()}) != 1:
        raise RuntimeError(f"paths disagree: {answers}")


def _run_rounds(bench: Bench, args: argparse.Namespace, generator: LoadGenerator) -> str:
    conns: list[int] = args.connections
    for path in PATHS:  # connections, caches, the router's pool, CPU clocks
        for c in conns:
            bench.measure(path, c, max(1.0, args.warmup / len(conns)), round_=0)
    runs: dict[tuple[str, int], list[Run]] = {(p, c): [] for p in PATHS for c in conns}
    for round_ in range(1, args.rounds + 1):
        shift = round_ % len(PATHS)  # each path goes first, second, last in turn
        order = PATHS[shift:] + PATHS[:shift]
        for c in conns:
            for path in order:
                run = bench.measure(path, c, args.duration, round_)
                runs[path, c].append(run)
                print(
                    f"round {round_} {path:>13} c={c:<3} p50 {run.load.p50_ms:6.3f} ms  "
                    f"p99 {run.load.p99_ms:6.3f} ms  {run.load.rps:8,.0f} req/s  "
                    f"errors {run.load.errors}  other load "
                    f"{_other_load(run):.2f} cores",
                    file=sys.stderr,
                )
    cells = {key: summarise(value) for key, value in runs.items()}
    facts = machine_facts(generator.describe())
    report = render(facts, args, cells)
    raw = {f"{p}|c={c}": [asdict(r) for r in rs] for (p, c), rs in runs.items()}
    json_path = args.out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"facts": facts, "runs": raw}, indent=1, default=str))
    return report


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        sys.exit(130)
