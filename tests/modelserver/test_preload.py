"""The built-in server imports its framework in a thread as soon as it knows it."""

from __future__ import annotations

import subprocess
import sys

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
