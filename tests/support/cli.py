"""The `modelhost` command line run as a real subprocess, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, url: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`url` goes in as --endpoint-url; without it the command relies on MODELHOST_URL."""
    command = [sys.executable, "-m", "modelhost", *args]
    if url is not None:
        command += ["--endpoint-url", url]
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )
