"""Find and kill the instance processes of an endpoint, as a crash would."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def instance_pids(server_pid: int, endpoint: str) -> list[int]:
    """Children of the server whose model dir belongs to `endpoint`'s model."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent != server_pid:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for item in environ:
            if item.startswith(b"SM_MODEL_DIR=") and f"/{endpoint}-".encode() in item:
                pids.append(int(entry.name))
    return sorted(pids)


def kill_and_wait(pid: int, timeout_s: float = 10) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not die")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
