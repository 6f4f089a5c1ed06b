"""Find and kill the instance processes of an endpoint, as a crash would."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, then parent)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parent_pid(pid: int | str) -> int:
    return int(_stat(pid)[1])


def instance_pids(server_pid: int, endpoint: str) -> list[int]:
    """Processes of the server (its children, or children of its fork server) that write
    their output to one of `endpoint`'s instance logs. (A forked instance's
    /proc/PID/environ is the fork server's, so the log is what tells them apart.)"""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = parent_pid(entry.name)
            if parent != server_pid and parent_pid(parent) != server_pid:
                continue
            output = os.readlink(entry / "fd" / "1")
        except (OSError, ValueError, IndexError):
            continue
        if f"/logs/{endpoint}/" in output:
            pids.append(int(entry.name))
    return sorted(pids)


def kill_and_wait(pid: int, timeout_s: float = 10) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), timeout_s, what=f"process {pid} to die")


def alive(pid: int) -> bool:
    try:
        state = _stat(pid)[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate, timeout_s: float = 60, what: str = "condition") -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
