"""A real `modelhost server` process, for the end-to-end tests and the benchmarks.

Both drive the product as users run it: a separate process on a free port with its own
data directory, reached over HTTP. It runs in its own session, so a Ctrl-C in a terminal
reaches only the test run or the benchmark, which then stops the server in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.aws import TEST_ENV, isolated_environ
from tests.support.processes import alive, instance_processes, started_at


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    *,
    what: str,
    log: Callable[[], str] = lambda: "",
) -> None:
    """Poll `url` until it answers 200; fail with `log()` if `process` exits first or
    `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} in {timeout_s:.0f} s:\n{log()}")


class ServerProcess:
    """One ``python -m modelhost server``.

    `env` goes on top of this process's environment, less whatever could steer it to a
    real AWS account (tests.support.aws); `python` is the interpreter to run it with;
    `port` defaults to a free one. A subclass may change `command()` (pin it to cores, run
    it under a profiler).
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        log_level: str = "info",
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.python = python
        self.log_level = log_level
        self.port = port or free_port()
        self.env = isolated_environ(dict(os.environ), env)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        # MODELHOST_METRICS_TOKEN of a server with access keys, for metrics_text().
        self.metrics_token = self.env.get("MODELHOST_METRICS_TOKEN", "")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server has not been started"
        return self.process.pid

    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "modelhost",
            "server",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            self.log_level,
        ]

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for_http(
            f"{self.url}/ping", self.process, timeout_s, what="modelhost server", log=self.log_tail
        )
        return self

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (the server stops its instances), SIGKILL if it hangs; then make sure
        no instance outlives it."""
        if self.process is None or self.process.poll() is not None:
            return
        instances = [(i.pid, started_at(i.pid)) for i in instance_processes(self.process.pid)]
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        deadline = time.monotonic() + 5
        for pid, started in instances:
            while _same(pid, started) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _same(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def restarted(self) -> ServerProcess:
        """A new server on this one's data directory, port and environment, started: what
        comes back after a crash or a stop, reachable at the same URL."""
        successor = type(self)(
            self.data_dir, python=self.python, log_level=self.log_level, port=self.port
        )
        successor.env = self.env
        successor.metrics_token = self.metrics_token
        return successor.start()

    def kill(self) -> None:
        """SIGKILL: the crash a restart must recover from."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log()[-chars:]
        except OSError:
            return ""

    def client(self, service: str, retries: int = 1) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=TEST_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": retries, "mode": "standard"}, read_timeout=120),
        )

    def metrics_text(self) -> str:
        """/metrics, with the bearer token a server with access keys wants."""
        headers = {"Authorization": f"Bearer {self.metrics_token}"} if self.metrics_token else {}
        request = urllib.request.Request(f"{self.url}/metrics", headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())


def _same(pid: int, started: int | None) -> bool:
    """`pid` is still the process seen before, not a later one that got its number."""
    return alive(pid) and started_at(pid) == started


@contextmanager
def running_server(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A started server, stopped when the block ends however it ends: the body of a test's
    own server fixture."""
    process = ServerProcess(data_dir, env=env).start()
    try:
        yield process
    finally:
        process.stop()
