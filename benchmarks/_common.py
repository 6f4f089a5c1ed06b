"""Shared plumbing for the benchmarks: machine facts, a load generator, Prometheus
histograms and the report files.

Benchmarks measure the product as users run it: a real ``modelhost server`` process driven
over HTTP with boto3 and an external load generator; nothing imports the server
in-process. The server process, the models, the endpoints and the /proc readings are the
tests' own (``tests/support``): one harness, so a benchmark and a test that deploy "the
iris model" deploy the same thing. Benchmarks run as scripts (``python benchmarks/x.py``),
which puts only this folder on ``sys.path``; importing this module first puts the
repository root there too, for ``tests.support``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(REPO_ROOT))

from tests.support.processes import children_cpu_seconds  # noqa: E402

# --------------------------------------------------------------------------- machine facts


def cpu_model() -> str:
    """The CPU's marketing name: results only compare across identical machines."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def wrk_version(wrk: str | None) -> str:
    if wrk is None:
        return "-"
    output = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
    return output.splitlines()[0].strip() if output else "unknown"


def machine_facts(load_generator: str) -> dict[str, str]:
    """Everything a reader needs to judge whether two result files are comparable."""
    affinity = len(os.sched_getaffinity(0))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus (nproc)": str(affinity),
        "cpu model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "modelhost": f"{_version('modelhost')} (git {_git_revision()})",
        "uvicorn / httptools / uvloop": " / ".join(
            _version(p) for p in ("uvicorn", "httptools", "uvloop")
        ),
        "prometheus-client / hdrhistogram": " / ".join(
            _version(p) for p in ("prometheus-client", "hdrhistogram")
        ),
        "load generator": load_generator,
    }


def machine_table(load_generator: str) -> list[str]:
    """The few machine facts a short report heads itself with, as a one-row Markdown
    table (the full list is for reports whose figures depend on library versions)."""
    facts = machine_facts(load_generator)
    keys = ("date", "cpus (nproc)", "cpu model", "python", "modelhost")
    return [
        "| | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
        "| machine | " + " | ".join(facts[k] for k in keys) + " |",
    ]


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def scratch_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="modelhost-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept data dir {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so `finally` cleanup runs for `kill` as
    for Ctrl-C; SIGINT is set explicitly because a shell's `cmd &` starts it ignored."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous_term = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


# --------------------------------------------------------------------------- requests


def post(
    url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --------------------------------------------------------------------------- load generation


@dataclass(frozen=True)
class LoadResult:
    """One closed-loop run: `connections` clients each sending back-to-back requests."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    errors: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


_WRK_LUA = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = {content_type}
{extra_headers}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p90_us\\":%d,"
    .. "\\"p99_us\\":%d,\\"mean_us\\":%f,\\"errors\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


class LoadGenerator:
    """Runs one closed-loop load test; `wrk` if available, else modelhost's own load
    generator (`python -m modelhost.loadgen`, closed loop).

    wrk (C, one thread) costs less CPU per request than any Python client, which matters
    on a 2-core machine where the generator shares cores with the system under test. The
    fallback runs in its own process for the same reason.
    """

    def __init__(self, kind: str, body: bytes, content_type: str, work_dir: Path) -> None:
        self.kind = kind
        self.body = body
        self.content_type = content_type
        self.wrk = shutil.which("wrk")
        if kind == "wrk" and self.wrk is None:
            raise RuntimeError("wrk not found; install it with `apt-get install -y wrk`")
        self.script = work_dir / "post.lua"
        self._write_script({})

    def _write_script(self, headers: dict[str, str]) -> None:
        extra = "\n".join(
            f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
        )
        self.script.write_text(
            _WRK_LUA.format(
                body=_lua_string(self.body.decode()),
                content_type=_lua_string(self.content_type),
                extra_headers=extra,
            )
        )

    @classmethod
    def choose(
        cls, requested: str, body: bytes, content_type: str, work_dir: Path
    ) -> LoadGenerator:
        if requested == "auto":
            requested = "wrk" if shutil.which("wrk") else "modelhost"
            if requested == "modelhost":
                print(
                    "wrk not found (apt-get install -y wrk); using modelhost.loadgen, "
                    "which costs more CPU per request",
                    file=sys.stderr,
                )
        return cls(requested, body, content_type, work_dir)

    def describe(self) -> str:
        if self.kind == "wrk":
            return f"{wrk_version(self.wrk)}, 1 thread, keep-alive"
        return "modelhost.loadgen closed loop in a separate process, keep-alive"

    def run(
        self, url: str, connections: int, duration_s: float, headers: dict[str, str] | None = None
    ) -> LoadResult:
        """One run; `headers` go on every request (one SigV4 signature, replayed: the
        server checks it in full each time, which is the cost a signed client adds)."""
        if self.kind == "wrk":
            assert self.wrk is not None
            self._write_script(headers or {})
            # wrk takes whole seconds only.
            command = [
                self.wrk,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--latency",
                "--timeout",
                "5s",
                "-s",
                str(self.script),
                url,
            ]
            stdin = None
        else:
            from modelhost.loadgen import LoadSpec, Phase

            spec = LoadSpec(
                url=url,
                phases=(Phase(duration_s, users=connections),),
                mode="closed",
                payloads=(self.body,),
                content_type=self.content_type,
                max_connections=connections,
                timeout_s=5.0,
                headers=tuple((headers or {}).items()),
            )
            command = [sys.executable, "-m", "modelhost.loadgen"]
            stdin = json.dumps(spec.to_json())
        cpu_before = children_cpu_seconds()
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            text=True,
        )
        try:
            stdout, stderr = process.communicate(stdin, timeout=duration_s + 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        generator_cpu = children_cpu_seconds() - cpu_before
        if self.kind != "wrk":
            return _loadgen_result(stdout, stderr, process.returncode, generator_cpu)
        for line in stdout.splitlines():
            if line.startswith(("WRK_RESULT ", "LOADGEN_RESULT ")):
                raw = json.loads(line.split(" ", 1)[1])
                break
        else:
            raise RuntimeError(
                f"load generator gave no result (rc {process.returncode}):\n{stdout}\n{stderr}"
            )
        return LoadResult(
            requests=int(raw["requests"]),
            duration_s=raw["duration_us"] / 1e6,
            p50_ms=raw["p50_us"] / 1e3,
            p90_ms=raw["p90_us"] / 1e3,
            p99_ms=raw["p99_us"] / 1e3,
            mean_ms=raw["mean_us"] / 1e3,
            errors=int(raw["errors"]),
            extra={"generator_cpu_s": generator_cpu},
        )


def _loadgen_result(
    stdout: str, stderr: str, returncode: int | None, generator_cpu: float
) -> LoadResult:
    from modelhost.loadgen import LoadResult as Measured

    if returncode != 0 or not stdout.strip():
        raise RuntimeError(f"load generator failed (rc {returncode}):\n{stderr}")
    measured = Measured.from_json(json.loads(stdout))
    return LoadResult(
        requests=measured.completed + measured.error_count,
        duration_s=measured.duration_s,
        p50_ms=measured.percentile_ms(50),
        p90_ms=measured.percentile_ms(90),
        p99_ms=measured.percentile_ms(99),
        mean_ms=measured.histogram.get_mean_value() / 1e3 if measured.completed else 0.0,
        errors=measured.error_count,
        extra={"generator_cpu_s": generator_cpu},
    )


# --------------------------------------------------------------------------- prometheus


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative bucket counts (upper bound → count), sum and count of one label set."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    def __sub__(self, other: HistogramSnapshot) -> HistogramSnapshot:
        before = dict(other.buckets)
        return HistogramSnapshot(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.total - other.total,
            self.count - other.count,
        )

    def __add__(self, other: HistogramSnapshot) -> HistogramSnapshot:
        theirs = dict(other.buckets)
        return HistogramSnapshot(
            tuple((le, n + theirs.get(le, 0.0)) for le, n in self.buckets),
            self.total + other.total,
            self.count + other.count,
        )

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def quantile(self, q: float) -> float:
        """Like PromQL's histogram_quantile: linear interpolation inside the bucket."""
        if not self.count:
            return float("nan")
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if le == float("inf"):
                    return lower_bound
                width = cumulative - lower_count
                fraction = (rank - lower_count) / width if width else 0.0
                return lower_bound + (le - lower_bound) * fraction
            lower_bound, lower_count = le, cumulative
        return lower_bound

    def bucket_of(self, q: float) -> tuple[float, float]:
        """The bucket bounds the quantile falls in: the estimate's honest error bar."""
        rank = q * self.count
        lower = 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                return lower, le
            lower = le
        return lower, float("inf")


EMPTY_HISTOGRAM = HistogramSnapshot((), 0.0, 0.0)


def read_histogram(metrics_text: str, name: str, labels: dict[str, str]) -> HistogramSnapshot:
    """One histogram's label set out of Prometheus text; empty if not there yet."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            if sample.name == f"{name}_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == f"{name}_sum":
                total = sample.value
            elif sample.name == f"{name}_count":
                count = sample.value
    buckets.sort()
    return HistogramSnapshot(tuple(buckets), total, count)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def add_output_options(parser: Any, name: str) -> None:
    """--out (default benchmarks/results/<name>.md) and --keep-data, as every benchmark
    has them."""
    parser.add_argument("--out", type=Path, default=BENCHMARKS_DIR / "results" / f"{name}.md")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp data dir")


def publish(text: str, out: Path) -> None:
    """Write the report where --out says and show it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
