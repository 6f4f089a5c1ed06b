"""Spare containers: the container backend's fork server.

A process instance forks from a fork server that imported the model server and the
framework once; a container starts a fresh interpreter that imports both, most of a
container's cold start. So for modelhost's own images (those labelled `SPARE_LABEL`,
whose server knows how to wait: :mod:`modelhost.modelserver.spare`) the backend keeps
one spare container per (image, instance type) a serverless endpoint uses: started with
the type's CPU and memory limits, its imports done, waiting for an assignment. A cold
start puts the model's files into the spare's own folder (mounted read-only at
`/opt/ml/model` since the spare started), writes the assignment (the instance's
environment and token) into its control folder, and the spare serves; a new spare is
started once that instance is ready.

What a spare cannot take (see :func:`usable_for`) starts a container of its own, the
usual way: GPU types (a spare would hold GPUs nobody uses), multi-container and
multi-model instances (the router adds models to a multi-model instance's folder while it
runs), and models that set a variable read only when a process starts.

Spares are the server's, not any endpoint's: nothing bills them. They go when the last
endpoint that used their key is deleted, when the server stops, and (labelled with the
data dir's scope, like instances) as leftovers when the next server starts.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelhost.instances.base import InstanceSpec
from modelhost.instances.forkserver import THREAD_VARIABLES

#: The image label that says its model server can wait as a spare.
SPARE_LABEL = "modelhost.spares"
#: Where a spare sees its control folder (the assignment comes there).
CONTROL_MOUNT = "/opt/modelhost-spare"
#: The multi-model switch (the deployment sets it from the model's Mode).
MULTI_MODEL = "SAGEMAKER_MULTI_MODEL"
#: Variables a process reads when it starts, before a spare could take them.
STARTUP_ONLY_PREFIXES = ("PYTHON", "LD_", "MALLOC_")
STARTUP_ONLY = frozenset(THREAD_VARIABLES)
SERVERLESS_PREFIX = "ml.serverless."
ASSIGNMENT = "assignment.json"  # modelhost.modelserver.spare.ASSIGNMENT


def startup_only(environment: Mapping[str, str]) -> list[str]:
    """The variables of `environment` a spare cannot take after it started."""
    return sorted(
        name
        for name in environment
        if name in STARTUP_ONLY or name.startswith(STARTUP_ONLY_PREFIXES)
    )


def usable_for(spec: InstanceSpec) -> bool:
    """Whether an instance of `spec` may start from a spare (its image aside)."""
    return (
        spec.instance_type.name.startswith(SERVERLESS_PREFIX)
        and not spec.instance_type.gpus
        and not spec.containers
        and (spec.environment.get(MULTI_MODEL) or "").lower() != "true"
        and not startup_only(spec.environment)
    )


@dataclass
class Spare:
    key: tuple[str, str]  # (the image's local name, the instance type's name)
    container: Any
    port: int
    folder: Path  # holds model/ (mounted at /opt/ml/model) and control/

    @property
    def model(self) -> Path:
        return self.folder / "model"

    @property
    def control(self) -> Path:
        return self.folder / "control"

    def assign(self, model_dir: Path, instance_id: str, environment: dict[str, str]) -> None:
        """Give the spare its model and its environment: files first (hard links where
        the folders share a file system, else copies), then the assignment by rename, so
        the spare never reads half of either."""
        _fill(model_dir, self.model)
        staged = self.control / f".{ASSIGNMENT}"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"instance_id": instance_id, "environment": environment}, out)
        staged.rename(self.control / ASSIGNMENT)

    def forget_assignment(self) -> None:
        """The instance read its assignment (it answers): its token need not stay on disk."""
        (self.control / ASSIGNMENT).unlink(missing_ok=True)


def make_folder(root: Path, name: str) -> Path:
    folder = root / name
    for sub in ("model", "control"):
        (folder / sub).mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    return folder


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _fill(source: Path, target: Path) -> None:
    try:
        shutil.copytree(source, target, copy_function=os.link, dirs_exist_ok=True)
    except (OSError, shutil.Error):
        shutil.copytree(source, target, dirs_exist_ok=True)


@dataclass
class SparePool:
    """The spares waiting, one per key, and the endpoints that used each key (a key with
    none left loses its spare). Every method is quick and thread-safe; the engine calls
    are the backend's."""

    waiting: dict[tuple[str, str], Spare] = field(default_factory=dict)
    making: set[tuple[str, str]] = field(default_factory=set)
    users: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def use(self, key: tuple[str, str], endpoint: str) -> None:
        with self.lock:
            self.users.setdefault(key, set()).add(endpoint)

    def take(self, key: tuple[str, str]) -> Spare | None:
        with self.lock:
            return self.waiting.pop(key, None)

    def begin_making(self, key: tuple[str, str]) -> bool:
        """Whether a spare for `key` should be made now (none waiting or on its way, an
        endpoint still uses the key); if so the caller makes it and calls `made`."""
        with self.lock:
            if self.closed or key in self.waiting or key in self.making:
                return False
            if not self.users.get(key):
                return False
            self.making.add(key)
            return True

    def made(self, key: tuple[str, str], spare: Spare | None) -> Spare | None:
        """Keep the spare just made; returned when it is no longer wanted (to remove)."""
        with self.lock:
            self.making.discard(key)
            if spare is None:
                return None
            if self.closed or not self.users.get(key) or key in self.waiting:
                return spare
            self.waiting[key] = spare
            return None

    def lost(self, spare: Spare) -> bool:
        """A waiting spare ended; whether it was still waiting."""
        with self.lock:
            if self.waiting.get(spare.key) is spare:
                del self.waiting[spare.key]
                return True
            return False

    def release(self, endpoint: str) -> list[Spare]:
        """The endpoint is gone: the spares of keys no endpoint uses now, to remove."""
        with self.lock:
            gone = []
            for key, users in self.users.items():
                users.discard(endpoint)
                if not users and key in self.waiting:
                    gone.append(self.waiting.pop(key))
            return gone

    def close(self) -> list[Spare]:
        with self.lock:
            self.closed = True
            gone = list(self.waiting.values())
            self.waiting.clear()
            return gone
