"""A real `modelhost server` process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from botocore.config import Config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 python: str = sys.executable) -> None:
        self.data_dir = data_dir
        self.python = python
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "modelhost", "server", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--log-level", "info"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not answer /ping in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restarted(self) -> ServerProcess:
        """A new server on this one's data directory, port and environment, started: what
        comes back after a crash or a stop, reachable at the same URL."""
        successor = ServerProcess(self.data_dir, env=self.env, python=self.python)
        successor.port = self.port
        return successor.start()

    def kill(self) -> None:
        """SIGKILL: the crash a restart must recover from."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, service: str, retries: int = 1):
        return boto3.client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": retries, "mode": "standard"},
                          read_timeout=120),
        )


@contextmanager
def running_server(data_dir: Path, env: dict[str, str] | None = None
                   ) -> Iterator[ServerProcess]:
    """A started server, stopped when the block ends however it ends: the body of a test's
    own server fixture."""
    process = ServerProcess(data_dir, env=env).start()
    try:
        yield process
    finally:
        process.stop()
