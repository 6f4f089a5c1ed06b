"""Exit when the control plane that started us is gone.

A model server started by the process backend must not outlive a killed control plane (a
``kill -9`` leaves no chance to stop children). The launcher passes its pid in
``MODELHOST_PARENT_PID``; a daemon thread checks it about once a second and ends the process.
Started before the model loads, so a slow load is cut short too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable

from modelhost.modelserver.confine import end_tree

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True  # no /proc (not Linux): kill(0) is all we can know
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def parent_gone(pid: int, was_parent: bool) -> bool:
    """Re-parenting (our parent died and init adopted us) or the pid no longer alive."""
    if was_parent and os.getppid() != pid:
        return True
    return not pid_alive(pid)


def _exit_now(pid: int) -> None:
    log.warning("parent process %d is gone; model server exiting", pid)
    end_tree()
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    # Not sys.exit: a model call may be holding a thread that would block interpreter exit.
    os._exit(0)


def watch_parent(
    pid: int, interval_s: float = 1.0, on_gone: Callable[[int], None] = _exit_now
) -> threading.Thread:
    """Start the daemon thread that calls ``on_gone(pid)`` once ``pid`` is gone."""
    was_parent = os.getppid() == pid

    def run() -> None:
        stop = threading.Event()
        while not parent_gone(pid, was_parent):
            stop.wait(interval_s)
        on_gone(pid)

    thread = threading.Thread(target=run, name="modelhost-parent-watch", daemon=True)
    thread.start()
    return thread
