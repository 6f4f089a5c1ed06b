"""What an instance may see of the server: an environment from an allow-list, a user of
its own, and a data directory it can only pass through.

Model code is the least trusted thing modelhost runs. It must not read the server's
secrets (access keys, webhook and metrics secrets, the server's own AWS credentials), the
state store, other models' data or logs, and must not change its own artifacts.

- The environment is built from :data:`ALLOWED` (what an interpreter and its libraries
  need to run), never by removing known secrets from the server's: a variable added to
  the server tomorrow stays out by default. The fork server is started the same way, so
  nothing secret is in the memory instances are forked from.
- When the server runs as root, instances run as ``MODELHOST_INSTANCE_USER`` (default
  ``nobody``, present on every Debian/Ubuntu machine). That user must be able to run the
  server's Python and reach the data directory; the backend checks once. Where it cannot
  (an interpreter under /root, a 0700 temporary directory), an explicitly named user is
  an error for every instance, while the default falls back to the server's user with a
  warning saying why: a machine that worked keeps working, loudly unconfined. Their
  model folder is the server's (root's, 0755/0644): readable, not writable. Their
  ``HOME``/``TMPDIR`` is a folder of their own under ``<data-dir>/instances`` owned by
  that user.
- The data directory is 0711 (others may pass through, not list), its ``models``,
  ``instances`` and ``packages`` (models' package environments) folders too; everything
  else in it (state store, queue, objects, logs) is closed to other users.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Variables an instance inherits from the server; everything else stays with the server.
ALLOWED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TZDIR",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONWARNINGS",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
    }
)
ALLOWED_PREFIXES = ("LC_",)

#: Folders of the data directory an instance user may pass through (never list).
PASSABLE = ("models", "instances", "packages")


def inherited_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k in ALLOWED or k.startswith(ALLOWED_PREFIXES)}


@dataclass(frozen=True)
class InstanceUser:
    name: str
    uid: int
    gid: int


def resolve_user(setting: str) -> InstanceUser | None:
    """The user instances run as, or None to run them as the server's own user.

    Only root can switch users: as root the default is ``nobody``; a server of another
    user keeps its instances as itself (and says so when a different user was asked).
    ``MODELHOST_INSTANCE_USER=root`` keeps instances as root, knowingly unconfined."""
    name = setting.strip()
    if os.geteuid() != 0:
        if name and name != pwd.getpwuid(os.geteuid()).pw_name:
            raise ValueError(
                f"MODELHOST_INSTANCE_USER={name!r}: only a server running as "
                "root can run instances as another user"
            )
        return None
    name = name or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"MODELHOST_INSTANCE_USER={name!r}: no such user") from None
    if entry.pw_uid == 0:
        log.warning(
            "instances run as root (MODELHOST_INSTANCE_USER=%s): model code can "
            "read the server's data directory",
            name,
        )
        return None
    return InstanceUser(name, entry.pw_uid, entry.pw_gid)


def protect_data_dir(data_dir: Path) -> None:
    """Close the data directory to other users, leaving the way to model folders and
    instance folders open (by name only)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in (*PASSABLE, "logs", "objects"):
        (data_dir / name).mkdir(exist_ok=True)
    os.chmod(data_dir, 0o711)
    for entry in data_dir.iterdir():
        if entry.name in PASSABLE:
            os.chmod(entry, 0o711)
        elif not entry.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                os.chmod(entry, entry.stat().st_mode & 0o7700)


class InstanceDirs:
    """Per instance: a home of its own (owned by the instance user) and a launch file (the
    instance's own environment, readable by root alone, deleted by the instance)."""

    def __init__(self, root: Path, user: InstanceUser | None) -> None:
        self.root = root
        self.user: InstanceUser | None = user
        self._launch = root / ".launch"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._launch.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self._launch, 0o700)

    def home(self, instance_id: str) -> Path:
        home = self.root / f"{instance_id}.{secrets.token_hex(4)}"
        home.mkdir(mode=0o700)
        if self.user is not None:
            os.chown(home, self.user.uid, self.user.gid)
        return home

    def launch_file(self, environment: dict[str, str]) -> Path:
        self.prepare()
        path = self._launch / f"{secrets.token_hex(8)}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(environment, handle)
        return path

    def remove(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def remove_all(self) -> None:
        """A previous run's homes and launch files (its instances are gone)."""
        if self.root.is_dir():
            for entry in self.root.iterdir():
                shutil.rmtree(entry, ignore_errors=True)


_PROBE = "import os, sys; import modelhost.modelserver.server; os.stat(sys.argv[1])"


def can_run_as(user: InstanceUser, environment: dict[str, str], models: Path) -> str | None:
    """Why `user` cannot start the model server (the Python installation or the data
    directory unreachable to it, say under /root), or None when it can."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, str(models)],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            env=environment,
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return (
        f"the instance user {user.name} cannot run the model server ({sys.executable}) "
        f"or reach {models}: {last}; install Python and modelhost, and keep the data "
        "directory, where other users can pass (not under /root)"
    )
