"""Find and end every process an instance started, whatever it did to get away.

Without control groups nothing in the kernel ties a model's helper processes to their
instance: a child that calls ``setsid()`` leaves the process group, and a double-forked
daemon is re-parented away from it. An instance therefore makes itself a *child subreaper*
(:mod:`.confine`): orphans among its descendants are re-parented to it instead of to PID 1,
so "descendants of the instance" stays a complete answer while it lives. This module walks
that tree through ``/proc`` and kills it, used by the instance on its way out and by the
server when an instance has to be killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

#: A process forking while we kill is caught by the next pass; this many passes at most.
_PASSES = 8


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (not zombie) process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        # The fields after the parenthesised command name: state, parent, process group.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in (b"Z", b"X"):
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int) -> list[int]:
    """The live descendants of `pid` (not `pid` itself) and the other live members of
    its process group when it leads one, parents before children."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    seen = set(found)
    found += [p for p, (_, group) in table.items() if group == pid and p != pid and p not in seen]
    return found


def kill_descendants(pid: int) -> None:
    """SIGKILL every descendant of `pid` (and member of its group) until none is left.
    Killed processes are zombies until their parent reaps them, and count as gone."""
    for _ in range(_PASSES):
        found = descendants(pid)
        if not found:
            return
        for child in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)


def kill_tree(pid: int) -> None:
    """End `pid` and everything below it: the descendants first, while `pid` still holds
    them (a subreaper's orphans would otherwise go to PID 1), then `pid` itself."""
    kill_descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
