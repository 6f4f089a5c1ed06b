"""One server per data directory: an exclusive lock on a file inside it.

Two servers on one data dir would share one SQLite state and each would "clean up" the
other's control groups, killing its instances. So the lock is the first thing a server
takes, before it touches anything else in the folder; a second server (or `modelhost
state restore`) is refused at once with the PID that holds it. The lock is flock(2) on
`<data-dir>/lock`: the kernel drops it with its process, so a SIGKILLed server never
leaves a stale one behind.

The file's text also says how the last holder ended: `<pid> running` while a server
runs, `<pid> stopped` once it shut down cleanly. A new holder reads it first, which is
how the state store learns that the previous run crashed (then its write-ahead log must
still be there) and that the folder held state before (then an empty store is a loss,
never a fresh start).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from pathlib import Path

LOCK_NAME = "lock"
RUNNING = "running"
STOPPED = "stopped"


class DataDirBusy(RuntimeError):
    """Another live process holds the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"PID {pid}" if pid else "another process"
        super().__init__(
            f"data dir {data_dir} is in use by {holder} (a modelhost server); "
            "stop it first or pick another --data-dir"
        )
        self.data_dir = data_dir
        self.pid = pid


class DataDirLock:
    """Held from `acquire` until `release` (or the process's end)."""

    def __init__(self, data_dir: Path, fd: int, previous: str) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd
        #: How the previous holder left the folder: "running" (it crashed), "stopped"
        #: (clean shutdown) or "" (no holder before: a new folder, or one from a version
        #: without the lock).
        self.previous = previous
        self._previous_pid = 0

    @classmethod
    def acquire(cls, data_dir: Path, state: str = RUNNING) -> DataDirLock:
        """Take the lock without waiting, or raise DataDirBusy; record `state`."""
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid(_read(fd))
            os.close(fd)
            raise DataDirBusy(data_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        text = _read(fd)
        lock = cls(data_dir, fd, text.partition(" ")[2].strip())
        lock._previous_pid = _pid(text) or 0
        lock.record(state)
        return lock

    @property
    def unclean(self) -> bool:
        """The previous server on this folder did not shut down cleanly."""
        return self.previous == RUNNING

    def used_before(self) -> bool:
        """Whether the folder shows that a server kept state here before."""
        if self.previous:
            return True
        return any(_non_empty(self.data_dir / name) for name in ("models", "logs"))

    def record(self, state: str) -> None:
        if self._fd is None:
            raise RuntimeError("the data dir lock was released")
        text = f"{os.getpid()} {state}\n".encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)
        os.fsync(self._fd)

    def release(self, state: str | None = STOPPED) -> None:
        """Record how this holder ends (None: put back what the previous holder left) and
        drop the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if state is None:
                os.ftruncate(self._fd, 0)
                if self.previous:
                    os.pwrite(self._fd, f"{self._previous_pid} {self.previous}\n".encode(), 0)
            else:
                self.record(state)
        os.close(self._fd)  # closing the only descriptor drops the flock
        self._fd = None


def _read(fd: int) -> str:
    return os.pread(fd, 256, 0).decode("ascii", "replace")


def _pid(text: str) -> int | None:
    head = text.split(" ", 1)[0].strip()
    return int(head) if head.isdigit() else None


def _non_empty(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError:
        return False


SERVER_ID_NAME = "server-id"


def server_id(data_dir: Path) -> str:
    """This data dir's server identity, made once and kept in `<data-dir>/server-id`: the
    holder name of its leases in a shared state store. Stable across restarts, so a
    restarted server takes back its own leases at once instead of waiting for them to
    expire; unique per data dir, and a data dir has one server at a time (its lock).
    Call it only while holding the lock."""
    path = data_dir / SERVER_ID_NAME
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    made = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
    temporary = path.with_name(f".{SERVER_ID_NAME}")
    temporary.write_text(made + "\n")
    os.replace(temporary, path)
    return made
