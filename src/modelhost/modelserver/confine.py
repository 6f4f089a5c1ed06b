"""What an instance does to itself before any model code runs: take its configuration,
give up the server's privileges, and tie its fate (and its children's) to its parent.

The order matters and is the reason this lives in the instance, not in the launcher:

1. Read the *launch file* (``MODELHOST_LAUNCH_FILE``): the instance's own environment
   (the model's variables, its access token) comes in a root-only file that the instance
   deletes once read, never through the fork server, whose memory every later instance
   is forked from, nor through anything another local user can read.
2. Join the control groups and set the memory limit (done by ``__main__``, still privileged:
   the group files belong to root).
3. Become a child subreaper, so that whatever the model starts, even a double-forked
   daemon, stays a descendant this instance can find and end (:mod:`.processtree`).
4. Drop to the instance user (``MODELHOST_INSTANCE_UID``/``_GID``). Changing credentials
   also makes the process non-dumpable: its ``/proc/<pid>/environ`` and memory are closed
   to other processes of the same user (other instances).
5. Ask for SIGHUP when the parent dies (the server, or the fork server, which itself dies
   with the server). It must come after step 4, which clears it. The handler ends the
   whole tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from modelhost.modelserver.errors import StartupError
from modelhost.modelserver.processtree import kill_descendants

ENV_LAUNCH_FILE = "MODELHOST_LAUNCH_FILE"
ENV_UID = "MODELHOST_INSTANCE_UID"
ENV_GID = "MODELHOST_INSTANCE_GID"

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

log = logging.getLogger(__name__)


def _prctl(option: int, value: int) -> bool:
    """prctl(2) where there is one (Linux); False elsewhere or on failure."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    return bool(libc.prctl(option, value, 0, 0, 0) == 0)


def load_launch_file() -> None:
    """Merge the launch file into the environment and delete it. The launcher made it
    readable by us alone; nobody needs it twice."""
    path = os.environ.pop(ENV_LAUNCH_FILE, None)
    if not path:
        return
    try:
        environment = json.loads(Path(path).read_text())
        Path(path).unlink()
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read the launch file {path}: {exc}") from exc
    os.environ.update({str(k): str(v) for k, v in environment.items()})


def become_subreaper() -> None:
    if not _prctl(_PR_SET_CHILD_SUBREAPER, 1):
        log.warning(
            "cannot become a child subreaper: processes the model starts in a new "
            "session may outlive the instance"
        )


def drop_privileges() -> None:
    """Switch to the instance user named by the launcher; nothing to do without one."""
    uid, gid = os.environ.pop(ENV_UID, ""), os.environ.pop(ENV_GID, "")
    if not uid:
        return
    try:
        os.setgroups([])
        os.setgid(int(gid or uid))
        os.setuid(int(uid))
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot switch to the instance user {uid}: {exc}") from exc
    if os.getuid() == 0 != int(uid):
        raise StartupError("still root after switching to the instance user")


def parent_death_signal(sig: int) -> bool:
    """Have the kernel send `sig` when our parent ends (cleared by a credential change)."""
    return _prctl(_PR_SET_PDEATHSIG, sig)


def die_with_parent(parent: int) -> None:
    """End this instance and its tree when `parent` (the process that started us) ends."""
    signal.signal(signal.SIGHUP, _parent_died)
    parent_death_signal(signal.SIGHUP)
    if os.getppid() != parent:  # it died before the request took effect
        _parent_died(signal.SIGHUP, None)


def _parent_died(signum: int, frame: FrameType | None) -> None:
    with contextlib.suppress(Exception):
        print(
            "modelhost.modelserver: the process that started this instance is gone; exiting",
            file=sys.stderr,
            flush=True,
        )
    end_tree()
    os._exit(0)


def end_tree_on_sigterm() -> None:
    """SIGTERM ends the tree too. uvicorn takes SIGTERM over while it serves and, after its
    graceful shutdown, raises it again against the handler it found: this one."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: FrameType | None) -> None:
    end_tree()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)  # the exit status still says SIGTERM


def end_tree() -> None:
    """Kill everything this instance started (on every way out)."""
    with contextlib.suppress(Exception):
        kill_descendants(os.getpid())
