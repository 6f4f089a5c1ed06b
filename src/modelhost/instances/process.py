"""The `process` backend: each instance is its own OS process running the model server.

A crashing or slow model must never take the control plane down with it, so model code
never runs in the server's process. Instances are started from the same Python, told the
parent's pid so they exit if the server is killed, held to their instance type's memory
(CPU-only types; GPU runtimes reserve address space far beyond what they use), and to its
vCPUs through the BLAS thread variables (threads spinning in several processes on few
cores ruin latency).

By default instances are forked from the fork server (:mod:`.forkserver`), a parent that
has already imported the model server, numpy and scikit-learn, instead of started as a
fresh interpreter: that is most of an instance's start time, and all of a serverless cold
start's. `fork=False` starts each one as `python -m modelhost.modelserver`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from modelhost.instances.base import InstanceSpec
from modelhost.instances.client import InstanceClient
from modelhost.instances.forking import ForkServer
from modelhost.instances.forkserver import THREAD_VARIABLES

logger = logging.getLogger(__name__)


class _Process(Protocol):
    """What an instance needs of its process: `subprocess.Popen` or a `ForkedProcess`."""

    returncode: int | None

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path | None, lines: int = 12) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


class ProcessInstance:
    def __init__(self, spec: InstanceSpec, process: _Process, port: int) -> None:
        self.spec = spec
        self.process = process
        self.port = port

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def failure_detail(self) -> str:
        tail = _log_tail(self.spec.log_path)
        return f"instance exited with code {self.process.returncode}" + (
            f": {tail}" if tail else ""
        )

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = InstanceClient()
        try:
            while time.monotonic() < deadline:
                if not self.is_alive():
                    raise RuntimeError(self.failure_detail())
                if await client.ping(self.address):
                    return
                # A refused connection costs microseconds; polling often keeps a forked
                # instance's start (tens of ms) from waiting on the poll interval.
                await asyncio.sleep(0.01)
        finally:
            client.close()
        await self.stop()
        raise RuntimeError(f"instance did not answer /ping within {timeout_s:.0f} s")

    async def stop(self) -> None:
        if not self.is_alive():
            return
        self.process.send_signal(signal.SIGTERM)
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.05)
        self.process.kill()
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.05)


class ProcessBackend:
    def __init__(self, fork: bool = True) -> None:
        self._forkserver = ForkServer() if fork else None

    async def warm(self) -> None:
        """Start the fork server ahead of the first instance."""
        if self._forkserver is not None:
            await self._forkserver.ensure_running()

    async def close(self) -> None:
        if self._forkserver is not None:
            await self._forkserver.close()

    async def start(self, spec: InstanceSpec) -> ProcessInstance:
        port = _free_port()
        threads = str(max(1, min(spec.instance_type.vcpu, os.cpu_count() or 1)))
        limits = {}
        if spec.instance_type.gpus == 0:
            limits["MODELHOST_MEMORY_LIMIT_MB"] = str(int(spec.instance_type.memory_gib * 1024))
        env = {
            **os.environ,
            **dict.fromkeys(THREAD_VARIABLES, threads),
            **limits,
            **spec.environment,
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "MODELHOST_BIND_HOST": "127.0.0.1",
            "SM_MODEL_DIR": str(spec.model_dir),
            "MODELHOST_FRAMEWORK": spec.framework,
            "MODELHOST_PARENT_PID": str(os.getpid()),
            "PYTHONUNBUFFERED": "1",
        }
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._forkserver is not None:
            try:
                return ProcessInstance(spec, await self._forkserver.spawn(env, spec.log_path),
                                       port)
            except (OSError, TimeoutError) as exc:
                logger.warning("instance %s: %s; starting it as a fresh interpreter",
                               spec.instance_id, exc)
        log = subprocess.DEVNULL
        if spec.log_path is not None:
            log = spec.log_path.open("wb")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelhost.modelserver"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        return ProcessInstance(spec, process, port)
