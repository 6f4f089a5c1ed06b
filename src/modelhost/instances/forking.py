"""The server's side of the fork server (:mod:`modelhost.instances.forkserver`).

The fork server is started once, as a fresh interpreter (safe from a server that has
threads), and asked over a socketpair to fork instances. It reaps them and reports their
exit status, which :class:`ForkedProcess` turns into the same `poll()` / `returncode` a
`subprocess.Popen` offers, so a process instance does not care how it was started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelhost.instances.forkserver import THREAD_VARIABLES
from modelhost.instances.isolation import inherited_environment
from modelhost.modelserver import pid_alive

log = logging.getLogger(__name__)

#: The fork server imports numpy, scikit-learn and the model server before it is ready.
_READY_TIMEOUT_S = 120.0
# Not `-m`: the package would import the module before running it as __main__.
_ENTRY = (
    "import sys; from modelhost.instances.forkserver import serve; "
    "serve(int(sys.argv[1]), int(sys.argv[2]))"
)


class ForkedProcess:
    """A child of the fork server, with the part of `subprocess.Popen`'s interface a
    process instance uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.generation = server.generation
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self.server.exit_code(self.pid)
            orphaned = not self.server.running or self.server.generation != self.generation
            if code is None and orphaned and not pid_alive(self.pid):
                code = -1  # its fork server is gone and cannot tell us the status
            self.returncode = code
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _kill_unwanted(answer: asyncio.Future[dict[str, Any]]) -> None:
    if answer.cancelled() or answer.exception() is not None:
        return
    pid = answer.result().get("pid")
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


class ForkServer:
    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.generation = 0  # which fork server process; a new one after a crash
        self._closing = False  # we are closing the connection: its end is no news

    @property
    def running(self) -> bool:
        return (
            self._process is not None
            and self._process.poll() is None
            and (self._reader_task is not None and not self._reader_task.done())
        )

    def exit_code(self, pid: int) -> int | None:
        return self._exits.pop(pid, None)

    async def ensure_running(self) -> None:
        """Start the fork server unless it runs; returns once it has done its imports."""
        async with self._lock:
            if self.running:
                return
            await self._close()
            self.generation += 1
            ours, theirs = socket.socketpair()
            # Allow-listed like an instance's: every instance is a copy of its memory.
            env = {**inherited_environment(), **dict.fromkeys(THREAD_VARIABLES, "1")}
            with theirs:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", _ENTRY, str(theirs.fileno()), str(os.getpid())],
                    pass_fds=(theirs.fileno(),),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    cwd="/",
                )
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
            async with asyncio.timeout(_READY_TIMEOUT_S):
                line = await reader.readline()
            if not line:
                raise OSError("the fork server exited while starting")
            log.info("fork server ready (pid %d)", json.loads(line)["pid"])
            self._reader_task = asyncio.create_task(self._read(reader), name="forkserver")

    async def spawn(self, env: dict[str, str], log_path: Path | None) -> ForkedProcess:
        await self.ensure_running()
        assert self._writer is not None
        request_id = next(self._ids)
        answer = self._pending[request_id] = asyncio.get_running_loop().create_future()
        self._writer.write(
            json.dumps(
                {
                    "id": request_id,
                    "env": env,
                    "log": str(log_path) if log_path else None,
                }
            ).encode()
            + b"\n"
        )
        await self._writer.drain()
        try:
            reply = await asyncio.shield(answer)
        except asyncio.CancelledError:
            # The caller gave up (the endpoint was deleted while creating): the child is
            # forked anyway, and nobody else will ever stop it.
            answer.add_done_callback(_kill_unwanted)
            raise
        if "error" in reply:
            raise OSError(f"the fork server could not fork: {reply['error']}")
        return ForkedProcess(self, int(reply["pid"]))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if "exited" in message:
                    self._exits[int(message["exited"])] = int(message["code"])
                else:
                    answer = self._pending.pop(int(message["id"]), None)
                    if answer is not None and not answer.done():
                        answer.set_result(message)
        finally:
            if not self._closing:
                log.warning("fork server connection closed")
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(OSError("the fork server exited"))
            self._pending.clear()

    async def _close(self) -> None:
        self._closing = True
        try:
            await self._close_connection()
        finally:
            self._closing = False

    async def _close_connection(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
            self._reader_task = None
        if self._process is not None:
            process, self._process = self._process, None
            try:
                async with asyncio.timeout(5):
                    await asyncio.to_thread(process.wait)
            except TimeoutError:
                process.kill()
                await asyncio.to_thread(process.wait)

    async def close(self) -> None:
        """Closing the socket is the fork server's signal to exit."""
        async with self._lock:
            await self._close()
