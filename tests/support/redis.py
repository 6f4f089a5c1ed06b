"""A real redis-server for tests, on a free port, with nothing persisted."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import free_port


@dataclass(frozen=True)
class RedisProcess:
    url: str
    process: subprocess.Popen[bytes]  # to SIGSTOP, for a Redis that stops answering


@contextmanager
def redis_server(work_dir: Path) -> Iterator[str]:
    """Yields the server's redis:// URL; skips the test when redis-server is not
    installed (scripts/test installs it)."""
    with redis_process(work_dir) as redis:
        yield redis.url


@contextmanager
def redis_process(work_dir: Path) -> Iterator[RedisProcess]:
    """`redis_server`, with the process."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield RedisProcess(f"redis://127.0.0.1:{port}/0", process)
    finally:
        process.send_signal(signal.SIGCONT)  # a stopped one cannot take the SIGTERM
        process.terminate()
        process.wait(10)
