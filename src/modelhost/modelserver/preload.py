"""Importing the framework's libraries while the rest of the server starts.

A fresh interpreter (a container, or an instance started without the fork server) spends
most of its start importing the framework: sklearn pulls in scipy, about a second of a
cold start. The built-in server knows its framework from ``MODELHOST_FRAMEWORK`` before
it has read anything else, so a thread starts importing it at once, while the main thread
imports the server and finds and reads the model; the model's own load then finds the
modules imported, or waits for the thread on the import lock. What overlaps is the
imports' file reads and native library loads (the GIL serializes the rest), so this trims
a start without changing what it does. A forked instance has them imported already and
the thread ends at once.

A failed import here is ignored: the model's load imports the same modules and reports
any failure the usual way.
"""

from __future__ import annotations

import contextlib
import importlib
import threading

#: What every model of a framework needs, whatever its estimator: `sklearn.base` is where
#: sklearn imports scipy; each estimator's own module comes with the unpickling.
MODULES: dict[str, tuple[str, ...]] = {
    "sklearn": ("joblib", "sklearn.base"),
    "onnx": ("onnxruntime",),
}


def start(framework: str) -> threading.Thread | None:
    """Begin importing `framework`'s libraries in a daemon thread (None: nothing to do)."""
    modules = MODULES.get(framework)
    if not modules:
        return None
    thread = threading.Thread(target=_import, args=(modules,), name="preload", daemon=True)
    thread.start()
    return thread


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
