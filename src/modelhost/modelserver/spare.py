"""A spare instance: the model server started ahead of its model, waiting to be assigned.

A container's cold start is mostly a fresh interpreter importing the model server and
the framework (sklearn pulls in scipy). The container backend keeps one spare container
per (image, instance type) that has done both already, with the type's CPU and memory
limits, so a cold start only hands it what makes it an instance: the model's files (put
into the spare's own folder, mounted read-only at the model dir from its start) and an
*assignment* file in the spare's control folder (``MODELHOST_SPARE_DIR``, also read-only
inside) holding the instance's environment: the model's variables, SageMaker's, and the
instance token. The spare merges that environment and starts as any instance does.

Variables read only when a process starts (the interpreter's ``PYTHON*``, the dynamic
loader's ``LD_*``, malloc's, the BLAS/OpenMP thread counts the framework read at import)
cannot change this way; the backend gives a model that sets one a container of its own.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from modelhost.modelserver import preload
from modelhost.modelserver.errors import StartupError

ENV_SPARE_DIR = "MODELHOST_SPARE_DIR"
#: The file the backend writes (atomically, by rename) into the control folder.
ASSIGNMENT = "assignment.json"
#: How often the waiting spare looks for its assignment: a stat every few milliseconds
#: costs nothing measurable and bounds what waiting adds to a cold start.
POLL_S = 0.005
#: What a spare imports ahead of its model, beyond the framework's own (preload.MODULES):
#: the server and the handler loader, which every instance imports.
SERVER_MODULES = ("modelhost.modelserver.server", "modelhost.modelserver.handlers")

log = logging.getLogger(__name__)


def wait_for_assignment() -> bool:
    """In a spare (``MODELHOST_SPARE_DIR`` set): import what every instance of the
    framework needs, then wait for the assignment and merge its environment. False when
    this is not a spare. SIGTERM ends a waiting spare at once (as PID 1 in a container it
    would otherwise be ignored, and a stop would wait out its grace)."""
    folder = os.environ.pop(ENV_SPARE_DIR, "")
    if not folder:
        return False
    previous = signal.signal(signal.SIGTERM, _end)
    framework = (os.environ.get("MODELHOST_FRAMEWORK") or "python").strip().lower()
    thread = preload.start(framework)
    for name in SERVER_MODULES:
        importlib.import_module(name)
    if thread is not None:
        thread.join()
    path = Path(folder) / ASSIGNMENT
    print(f"modelhost.modelserver: spare ready for {framework}", file=sys.stderr, flush=True)
    while not path.exists():
        time.sleep(POLL_S)
    try:
        assignment = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read the spare's assignment {path}: {exc}") from exc
    os.environ.update({str(k): str(v) for k, v in assignment["environment"].items()})
    signal.signal(signal.SIGTERM, previous)
    print(
        f"modelhost.modelserver: spare assigned to instance {assignment['instance_id']}",
        file=sys.stderr,
        flush=True,
    )
    return True


def _end(signum: int, frame: FrameType | None) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(0)
