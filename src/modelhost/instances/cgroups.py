"""Control groups: hold each process instance to its instance type's CPU and memory.

BLAS thread counts only ask a model to be modest, and RLIMIT_DATA only sees one process's
private mappings. A control group is what the kernel enforces: a CPU quota (the type's
vCPUs as cores per scheduling period) and a memory limit (the type's memory) on the
instance and everything it starts.

Groups live under ``<the server's own group>/modelhost/<key>/<instance id>`` in each
hierarchy (on v2 beside the server's group unless that is the root: a v2 group that holds
a process cannot hand controllers down). The key is a hash of the server's data directory:
a restarted server finds what its previous run left (its instances exit with it) and
removes it, and two servers with different data directories never touch each other's
groups. That clean-up relies on the data directory's lock (`modelhost.storage.datadir`),
which the server takes before it creates a backend: a second server on the same folder
is refused before it could kill the first one's instances. Nesting under the server's
own group keeps instances inside whatever limits the server itself runs under.

cgroup v2 (one unified hierarchy with the ``cpu`` controller) is preferred; cgroup v1
(separate ``cpu`` and ``memory`` hierarchies) is used where v2 has no ``cpu`` controller.
Where neither is writable (no root, no delegation, a container without them) :func:`detect`
returns None with the reason, and instances get only the thread counts and RLIMIT_DATA.

The instance joins its group itself, before its model loads: the backend creates the group
and passes the ``cgroup.procs`` files in ``MODELHOST_CGROUP_PROCS``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import logging
import math
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The CFS scheduling period; the quota is a share of it.
PERIOD_US = 100_000
#: The kernel refuses quotas under 1 ms.
_MIN_QUOTA_US = 1_000
_PARENT = "modelhost"
#: How long a group may stay busy after its leftover processes were sent SIGKILL.
_KILL_WAIT_S = 2.0


def host_cpus() -> int:
    return os.cpu_count() or 1


def cpu_cores(vcpus: int, scale: float) -> float:
    """Cores an instance type gets here: its vCPUs times the scale, at most the host's.

    On a host with fewer cores than the type has vCPUs the quota equals the host and
    limits nothing; a scale below 1 keeps types apart on a small host."""
    return min(vcpus * scale, float(host_cpus()))


def thread_count(vcpus: int, scale: float) -> int:
    """BLAS/OpenMP threads for an instance: the cores its quota gives, rounded up."""
    return max(1, math.ceil(cpu_cores(vcpus, scale) - 1e-9))


@dataclass(frozen=True)
class Group:
    """One instance's group: a directory per hierarchy (one on v2, cpu and memory on v1)."""

    dirs: tuple[Path, ...]

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self.dirs)

    def remove(self) -> bool:
        """Kill what is left in the group and remove it; False if the kernel still holds
        it (a process not yet gone), for a later try."""
        removed = True
        for directory in self.dirs:
            removed = _remove_tree(directory) and removed
        return removed


class Cgroups:
    """A writable cgroup hierarchy (v1 or v2) and this server's parent group in it."""

    def __init__(self, version: int, parents: dict[str, Path], scale: float) -> None:
        self.version = version
        # controller ("cpu", "memory"; on v2 both map to the same directory) -> parent dir
        self.parents = parents
        self.scale = scale
        self._serial = itertools.count(1)

    def create(self, instance_id: str, vcpus: int, memory_bytes: int) -> Group:
        """Create the instance's group with its CPU quota and memory limit."""
        quota = max(_MIN_QUOTA_US, round(cpu_cores(vcpus, self.scale) * PERIOD_US))
        # Numbered, with the server's pid: an update's new instance may share an id with
        # one still draining, and a restarted server's with its previous run's.
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance_id)
        name = f"{safe}.{os.getpid()}.{next(self._serial)}"
        dirs: list[Path] = []
        try:
            for parent in self.parents.values():
                if parent / name not in dirs:
                    (parent / name).mkdir()
                    dirs.append(parent / name)
            if self.version == 2:
                directory = self.parents["cpu"] / name
                _write(directory / "cpu.max", f"{quota} {PERIOD_US}")
                if "memory" in self.parents:
                    _write(directory / "memory.max", str(memory_bytes))
                    with contextlib.suppress(OSError):  # absent without swap accounting
                        _write(directory / "memory.swap.max", "0")
            else:
                cpu = self.parents["cpu"] / name
                _write(cpu / "cpu.cfs_period_us", str(PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(quota))
                if "memory" in self.parents:
                    _write(
                        self.parents["memory"] / name / "memory.limit_in_bytes", str(memory_bytes)
                    )
        except OSError:
            Group(tuple(dirs)).remove()
            raise
        return Group(tuple(dirs))

    def remove_all(self) -> None:
        """Remove every group under this server's parents: a previous run's at startup."""
        for parent in set(self.parents.values()):
            for child in parent.iterdir() if parent.is_dir() else ():
                if child.is_dir() and not _remove_tree(child):
                    log.warning("cgroup %s is still busy; left in place", child)

    def close(self) -> None:
        """At shutdown: remove this server's groups and its parent group."""
        for parent in set(self.parents.values()):
            if not _remove_tree(parent):
                log.warning("cgroup %s is still busy; left in place", parent)


def scope_key(data_dir: Path) -> str:
    """The parent group's name for a server with this data directory."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def detect(mode: str, key: str, scale: float) -> tuple[Cgroups | None, str]:
    """The usable hierarchy, or None and why not. Creates this server's parent groups."""
    if mode == "off":
        return None, "MODELHOST_CGROUPS=off"
    mounts = _mounts()
    reasons: list[str] = []
    for attempt in (_v2, _v1):
        try:
            parents = attempt(mounts, key)
        except OSError as exc:
            reasons.append(f"{attempt.__name__[1:]}: {exc}")
            continue
        if parents is None:
            continue
        return Cgroups(2 if attempt is _v2 else 1, parents, scale), ""
    return None, "; ".join(reasons) or "no mounted cgroup hierarchy has a cpu controller"


# --- detection -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    path: Path
    root: str  # the part of the hierarchy this mount shows (not "/" inside a container)
    fstype: str
    controllers: frozenset[str]


def _mounts() -> list[_Mount]:
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            fstype = fields[separator + 1]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            options = fields[separator + 3].split(",")
            mounts.append(_Mount(Path(fields[4]), fields[3], fstype, frozenset(options)))
    return mounts


def _own_groups() -> dict[str, str]:
    """This process's group per v1 controller, and under "" its v2 group."""
    groups: dict[str, str] = {}
    with open("/proc/self/cgroup") as cgroup:
        for line in cgroup:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                groups[controller] = path
    return groups


def _inside(mount: _Mount, group: str) -> Path:
    relative = group[len(mount.root) :] if group.startswith(mount.root) else group
    return mount.path / relative.lstrip("/")


def _v2(mounts: list[_Mount], key: str) -> dict[str, Path] | None:
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None:
        return None
    own = _inside(mount, _own_groups().get("", "/"))
    available = set((own / "cgroup.controllers").read_text().split())
    if "cpu" not in available:
        return None
    wanted = [c for c in ("cpu", "memory") if c in available]
    enable = " ".join(f"+{c}" for c in wanted)
    if own == mount.path:
        base = own  # the root group may hold processes and hand controllers down
        _write(base / "cgroup.subtree_control", enable)
    else:
        # A non-root group that holds processes (the server) cannot hand controllers down;
        # its parent already hands them to it, so ours sits beside it.
        base = own.parent
    parent = base / _PARENT / key
    for directory in (base / _PARENT, parent):
        directory.mkdir(exist_ok=True)
        _write(directory / "cgroup.subtree_control", enable)
    return dict.fromkeys(wanted, parent)


def _v1(mounts: list[_Mount], key: str) -> dict[str, Path] | None:
    own = _own_groups()
    parents: dict[str, Path] = {}
    for controller in ("cpu", "memory"):
        mount = next(
            (m for m in mounts if m.fstype == "cgroup" and controller in m.controllers), None
        )
        if mount is None:
            if controller == "cpu":
                return None
            continue
        parent = _inside(mount, own.get(controller, "/")) / _PARENT / key
        parent.mkdir(parents=True, exist_ok=True)
        if not os.access(parent, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable", str(parent))
        parents[controller] = parent
    return parents


# --- files -----------------------------------------------------------------------------


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _remove_tree(directory: Path) -> bool:
    """SIGKILL every process in `directory` and below, then remove the directories
    (deepest first). A group whose last process is still exiting is busy for a moment."""
    if not directory.is_dir():
        return True
    removed = True
    for child in directory.iterdir():
        if child.is_dir():
            removed = _remove_tree(child) and removed
    killed = False
    with contextlib.suppress(OSError):
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
                killed = True
    # A process just killed takes a moment to leave its group; one that had already
    # exited is gone, so only a kill is worth waiting for (rarely: leftovers).
    deadline = time.monotonic() + (_KILL_WAIT_S if killed else 0.0)
    while True:
        try:
            directory.rmdir()
            return removed
        except FileNotFoundError:
            return removed
        except OSError as exc:
            if time.monotonic() >= deadline:
                log.debug("cgroup %s not removed yet: %s", directory, exc)
                return False
            time.sleep(0.01)
