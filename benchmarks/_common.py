"""Shared plumbing for the benchmarks: a real server, a real model, a load generator.

Benchmarks must measure the product as users run it, so everything here drives a real
``modelhost server`` process over HTTP with boto3 and an external load generator; nothing
imports the server in-process. Helpers live here (not in ``tests/support``) so the
benchmarks keep working whatever the test suite's internals become.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Dummy credentials: the server checks SigV4 shape, not secrets. Drop anything that would
# send boto3 to real AWS.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_AWS_DROP = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN")


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
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
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
            _version(p) for p in ("uvicorn", "httptools", "uvloop")),
        "prometheus-client / hdrhistogram": " / ".join(
            _version(p) for p in ("prometheus-client", "hdrhistogram")),
        "load generator": load_generator,
    }


def machine_table(load_generator: str) -> list[str]:
    """The few machine facts a short report heads itself with, as a one-row Markdown
    table (the full list is for reports whose figures depend on library versions)."""
    facts = machine_facts(load_generator)
    keys = ("date", "cpus (nproc)", "cpu model", "python", "modelhost")
    return ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys),
            "| machine | " + " | ".join(facts[k] for k in keys) + " |"]


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all threads), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds every core spent not idle, machine-wide (/proc/stat): subtract our own
    processes and what is left is other load that skewed the run."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS  # user..steal; guest is inside user


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children: how the load generator's cost is measured."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_pids(parent: int) -> list[int]:
    """Direct children of `parent`, found by scanning /proc (works without CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == parent:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class InstanceProcess:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def listening_ports(pid: int) -> list[int]:
    """TCP ports `pid` listens on: its socket inodes matched against /proc/net/tcp{,6}."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def instance_processes(server_pid: int) -> list[InstanceProcess]:
    """The model servers the server started: its children, or the children of its fork
    server, that listen on a TCP port.

    A forked instance's /proc environ is the fork server's, so the port the process backend
    gave it (``SAGEMAKER_BIND_TO_PORT``) is read back from its listening socket instead.
    """
    found = []
    for child in child_pids(server_pid):
        for pid in [child, *child_pids(child)]:
            ports = listening_ports(pid)
            if ports:
                found.append(InstanceProcess(pid, ports[0]))
    return found


class ModelhostServer:
    """One ``python -m modelhost server`` on a free port with its own data dir.

    Started in its own session so that a Ctrl-C in the terminal reaches only the
    benchmark, which then deletes the endpoint and stops the server in order.
    """

    def __init__(self, data_dir: Path, log_level: str = "info") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_level = log_level
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.metrics_token = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        """The server's argv; a subclass may start a variant (a patched build, a profiler)."""
        return [sys.executable, "-m", "modelhost", "server", "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--log-level", self.log_level]

    def start(self, timeout_s: float = 60.0, env: dict[str, str] | None = None
              ) -> ModelhostServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        full_env = {k: v for k, v in os.environ.items() if k not in _AWS_DROP} | AWS_ENV
        full_env |= env or {}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=full_env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer /ping in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (the server stops its instances), SIGKILL if it hangs; then make sure
        no instance outlives it."""
        if self.process is None:
            return
        instances = [i.pid for i in instance_processes(self.process.pid)]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 5
        for pid in instances:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service, endpoint_url=self.url, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120),
        )

    def metrics_text(self) -> str:
        """/metrics, with the bearer token a server with access keys wants when
        `metrics_token` is set (its MODELHOST_METRICS_TOKEN)."""
        headers = {"Authorization": f"Bearer {self.metrics_token}"} if self.metrics_token \
            else {}
        request = urllib.request.Request(f"{self.url}/metrics", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


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


# --------------------------------------------------------------------------- the model


def iris_rows(count: int = 3) -> list[list[float]]:
    from sklearn.datasets import load_iris

    features, _ = load_iris(return_X_y=True)
    picks = [0, 60, 120, 10, 70, 130][:count]
    return [[float(x) for x in features[i]] for i in picks]


def write_iris_tarball(path: Path) -> Path:
    """Train the iris LogisticRegression now (no artefact in git) and pack model.tar.gz."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    model_bytes = io.BytesIO()
    joblib.dump(model, model_bytes)
    data = model_bytes.getvalue()
    archive_bytes = io.BytesIO()
    with tarfile.open(fileobj=archive_bytes, mode="w:gz") as archive:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(archive_bytes.getvalue())
    return path


def model_tarball(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz holding `files` (name -> content), e.g. ``code/inference.py``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def put_iris_model(server: ModelhostServer, bucket: str = "bench",
                   key: str = "iris/model.tar.gz") -> str:
    """Drop the tarball into the embedded object store, where s3://bucket/key resolves."""
    write_iris_tarball(server.data_dir / "objects" / bucket / key)
    return f"s3://{bucket}/{key}"


def deploy(sagemaker: Any, model_url: str, *, image: str = "modelhost/sklearn",
           instance_type: str = "ml.m5.large", count: int = 1,
           environment: dict[str, str] | None = None, timeout_s: float = 120.0,
           async_config: dict[str, Any] | None = None) -> str:
    """Model → EndpointConfig → Endpoint, then wait for InService; returns its name.
    `async_config`: the config's AsyncInferenceConfig, for an asynchronous endpoint."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    container = {"Image": image, "ModelDataUrl": model_url}
    if environment:
        container["Environment"] = environment
    sagemaker.create_model(ModelName=name, PrimaryContainer=container,
                           ExecutionRoleArn="arn:aws:iam::000000000000:role/bench")
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type,
        "InitialInstanceCount": count, "InitialVariantWeight": 1.0,
    }], **({"AsyncInferenceConfig": async_config} if async_config else {}))
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + timeout_s
    while True:
        status = sagemaker.describe_endpoint(EndpointName=name)
        if status["EndpointStatus"] == "InService":
            return name
        if status["EndpointStatus"] == "Failed":
            raise RuntimeError(f"endpoint failed: {status.get('FailureReason')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"endpoint stuck in {status['EndpointStatus']}")
        time.sleep(0.2)


def undeploy(sagemaker: Any, name: str, timeout_s: float = 60.0) -> None:
    """Delete endpoint, config and model; best effort, since it runs during cleanup."""
    from botocore.exceptions import ClientError

    with contextlib.suppress(ClientError):
        sagemaker.delete_endpoint(EndpointName=name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sagemaker.describe_endpoint(EndpointName=name)  # raises once it is gone
            time.sleep(0.2)
    with contextlib.suppress(ClientError):
        sagemaker.delete_endpoint_config(EndpointConfigName=name)
    with contextlib.suppress(ClientError):
        sagemaker.delete_model(ModelName=name)


def post(url: str, body: bytes, content_type: str,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
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
        extra = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}"
                          for k, v in headers.items())
        self.script.write_text(_WRK_LUA.format(body=_lua_string(self.body.decode()),
                                               content_type=_lua_string(self.content_type),
                                               extra_headers=extra))

    @classmethod
    def choose(cls, requested: str, body: bytes, content_type: str,
               work_dir: Path) -> LoadGenerator:
        if requested == "auto":
            requested = "wrk" if shutil.which("wrk") else "modelhost"
            if requested == "modelhost":
                print("wrk not found (apt-get install -y wrk); using modelhost.loadgen, "
                      "which costs more CPU per request", file=sys.stderr)
        return cls(requested, body, content_type, work_dir)

    def describe(self) -> str:
        if self.kind == "wrk":
            return f"{wrk_version(self.wrk)}, 1 thread, keep-alive"
        return "modelhost.loadgen closed loop in a separate process, keep-alive"

    def run(self, url: str, connections: int, duration_s: float,
            headers: dict[str, str] | None = None) -> LoadResult:
        """One run; `headers` go on every request (one SigV4 signature, replayed: the
        server checks it in full each time, which is the cost a signed client adds)."""
        if self.kind == "wrk":
            assert self.wrk is not None
            self._write_script(headers or {})
            # wrk takes whole seconds only.
            command = [self.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
                       "--latency", "--timeout", "5s", "-s", str(self.script), url]
            stdin = None
        else:
            from modelhost.loadgen import LoadSpec, Phase

            spec = LoadSpec(url=url, phases=(Phase(duration_s, users=connections),),
                            mode="closed", payloads=(self.body,),
                            content_type=self.content_type, max_connections=connections,
                            timeout_s=5.0, headers=tuple((headers or {}).items()))
            command = [sys.executable, "-m", "modelhost.loadgen"]
            stdin = json.dumps(spec.to_json())
        cpu_before = children_cpu_seconds()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True, text=True)
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
            raise RuntimeError(f"load generator gave no result (rc {process.returncode}):\n"
                               f"{stdout}\n{stderr}")
        return LoadResult(
            requests=int(raw["requests"]), duration_s=raw["duration_us"] / 1e6,
            p50_ms=raw["p50_us"] / 1e3, p90_ms=raw["p90_us"] / 1e3,
            p99_ms=raw["p99_us"] / 1e3, mean_ms=raw["mean_us"] / 1e3,
            errors=int(raw["errors"]), extra={"generator_cpu_s": generator_cpu},
        )


def _loadgen_result(stdout: str, stderr: str, returncode: int | None,
                    generator_cpu: float) -> LoadResult:
    from modelhost.loadgen import LoadResult as Measured

    if returncode != 0 or not stdout.strip():
        raise RuntimeError(f"load generator failed (rc {returncode}):\n{stderr}")
    measured = Measured.from_json(json.loads(stdout))
    return LoadResult(
        requests=measured.completed + measured.error_count, duration_s=measured.duration_s,
        p50_ms=measured.percentile_ms(50), p90_ms=measured.percentile_ms(90),
        p99_ms=measured.percentile_ms(99),
        mean_ms=measured.histogram.get_mean_value() / 1e3 if measured.completed else 0.0,
        errors=measured.error_count, extra={"generator_cpu_s": generator_cpu},
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
            self.total - other.total, self.count - other.count,
        )

    def __add__(self, other: HistogramSnapshot) -> HistogramSnapshot:
        theirs = dict(other.buckets)
        return HistogramSnapshot(
            tuple((le, n + theirs.get(le, 0.0)) for le, n in self.buckets),
            self.total + other.total, self.count + other.count,
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
