"""Importing the framework's libraries while the rest of the server starts.

A fresh interpreter (a container, or an instance started without the fork server) spends
most of its start importing the framework: sklearn pulls in scipy, about a second of a
cold start. The built-in server knows its framework from ``MODELHOST_FRAMEWORK`` before
it has read anything else, so a thread starts importing it at once, while the main thread
imports the server. What overlaps is the imports' file reads and native library loads (the
GIL serializes the rest), so this trims a start without changing what it does. A forked
instance has them imported already and the thread ends at once.

User code and the model's load wait for the thread (:func:`wait`) before they import
anything: two threads importing one package with circular imports (sklearn's ``__init__``
imports ``sklearn.base``, which imports the package back) can meet in Python's import-lock
deadlock detection, which hands one of them the partially initialized module and an
ImportError ("cannot import name 'clone' from partially initialized module").

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


_started: threading.Thread | None = None


def start(framework: str) -> threading.Thread | None:
    """Begin importing `framework`'s libraries in a daemon thread (None: nothing to do)."""
    global _started
    modules = MODULES.get(framework)
    if not modules:
        return None
    thread = threading.Thread(target=_import, args=(modules,), name="preload", daemon=True)
    thread.start()
    _started = thread
    return thread


def wait() -> None:
    """Return once the imports :func:`start` began are done (at once if none were)."""
    if _started is not None:
        _started.join()


def _import(modules: tuple[str, ...]) -> None:
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
