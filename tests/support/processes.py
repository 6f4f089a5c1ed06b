"""Reading processes out of /proc: a server's instances, their CPU and memory, and killing
one as a crash would.

The one place the tests and the benchmarks read /proc, so that a field's position or a
zombie's state is interpreted the same way everywhere.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, then parent)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parent_pid(pid: int | str) -> int:
    return int(_stat(pid)[1])


def child_pids(parent: int) -> list[int]:
    """Direct children of `parent`, found by scanning /proc (works without
    CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if parent_pid(entry.name) == parent:
                found.append(int(entry.name))
    return sorted(found)


def _server_processes(server_pid: int) -> list[int]:
    """The server's children and its children's children: where its instances run, whether
    started directly or forked from its fork server (not the rclone serving its S3 API)."""
    return [
        pid
        for child in child_pids(server_pid)
        if not _is_rclone(child)
        for pid in (child, *child_pids(child))
    ]


def _is_rclone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "rclone"
    except OSError:
        return False


def instance_pids(server_pid: int, endpoint: str) -> list[int]:
    """Processes of the server that write their output to one of `endpoint`'s instance
    logs. (A forked instance's /proc/PID/environ is the fork server's, so the log is what
    tells them apart.)"""
    pids = []
    for pid in _server_processes(server_pid):
        with contextlib.suppress(OSError):
            if f"/logs/{endpoint}/" in os.readlink(f"/proc/{pid}/fd/1"):
                pids.append(pid)
    return sorted(pids)


@dataclass(frozen=True)
class InstanceProcess:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def listening_ports(pid: int) -> list[int]:
    """TCP ports `pid` listens on: its socket inodes matched against /proc/net/tcp{,6}."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def instance_processes(server_pid: int) -> list[InstanceProcess]:
    """The model servers the server started, with the port each listens on.

    A forked instance's /proc environ is the fork server's, so the port the process backend
    gave it (``SAGEMAKER_BIND_TO_PORT``) is read back from its listening socket instead.
    """
    found = []
    for pid in _server_processes(server_pid):
        ports = listening_ports(pid)
        if ports:
            found.append(InstanceProcess(pid, ports[0]))
    return found


def started_at(pid: int) -> int | None:
    """When the process started (clock ticks since boot), None if it is gone: with the pid,
    what names one process, since a pid is reused once its process is reaped."""
    try:
        return int(_stat(pid)[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        state = _stat(pid)[0]
    except OSError:
        return False
    return state != "Z"


def kill_and_wait(pid: int, timeout_s: float = 10) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), timeout_s, what=f"process {pid} to die")


def wait_until(predicate, timeout_s: float = 60, what: str = "condition") -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- CPU, memory


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all threads); 0 once it is gone."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had (0 once it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds every core spent not idle, machine-wide (/proc/stat): subtract our own
    processes and what is left is other load that skewed a measurement."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS  # user..steal; guest is inside user


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children (a load generator that ran to its end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
