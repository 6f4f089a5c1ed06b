"""The built-in server imports its framework in a thread as soon as it knows it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelhost.modelserver import preload
from modelhost.modelserver.handlers import load_handlers
from modelhost.modelserver.settings import Settings

PROBE = """
import sys
from modelhost.modelserver import preload
assert "sklearn" not in sys.modules
thread = preload.start(sys.argv[1])
if thread is not None:
    thread.join(120)
print(" ".join(sorted(m for m in ("sklearn.base", "joblib", "onnxruntime") if m in sys.modules)))
"""


def _imported(framework: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, framework],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return done.stdout.strip()


def test_sklearn_is_imported_in_the_background() -> None:
    assert _imported("sklearn") == "joblib sklearn.base"


def test_a_framework_without_libraries_starts_no_thread() -> None:
    assert _imported("python") == ""


def test_user_code_waits_for_the_preload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the model's may import while the preload thread does: two threads
    importing one package with circular imports can be handed a partially initialized
    module (seen as "cannot import name 'clone' from partially initialized module
    'sklearn.base'")."""
    finished = threading.Event()
    slow = threading.Thread(target=lambda: (time.sleep(0.5), finished.set()), daemon=True)
    slow.start()
    monkeypatch.setattr(preload, "_started", slow)
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(
        "def model_fn(model_dir):\n"
        "    return 'loaded'\n"
        "def predict_fn(data, model):\n"
        "    return data\n"
    )
    handlers = load_handlers(Settings(model_dir=tmp_path))
    assert finished.is_set()
    assert handlers.model == "loaded"
