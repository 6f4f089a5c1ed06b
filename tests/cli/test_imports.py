"""The `modelhost` command is a client: importing it must not load the control plane.

Each check runs in a fresh interpreter, since this test process may have imported the
server already."""

from __future__ import annotations

import subprocess
import sys

import pytest

CONTROL_PLANE = ("modelhost.api", "modelhost.controllers", "modelhost.server")
CLI_MODULES = (
    "modelhost.cli",
    "modelhost.cli.console",
    "modelhost.cli.control",
    "modelhost.cli.deploy",
    "modelhost.cli.endpoints",
    "modelhost.cli.images",
    "modelhost.cli.load",
    "modelhost.cli.logs",
    "modelhost.cli.models",
    "modelhost.cli.packing",
    "modelhost.cli.recommend",
    "modelhost.cli.recommendation_chart",
    "modelhost.cli.server",
    "modelhost.cli.transform",
    "modelhost.cli.transform_console",
    "modelhost.cli.transform_schedules",
)


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def _control_plane(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in CONTROL_PLANE))


def test_importing_every_cli_module_leaves_the_control_plane_unloaded() -> None:
    loaded = _loaded_after("\n".join(f"import {module}" for module in CLI_MODULES))
    assert set(CLI_MODULES) <= loaded
    assert _control_plane(loaded) == []


@pytest.mark.parametrize(
    "command",
    [
        ["models", "--help"],
        ["endpoints", "list", "--help"],
        ["schedules", "--help"],
        ["recommend", "--help"],
        ["transform-jobs", "--help"],
        ["images", "build", "--help"],
    ],
)
def test_running_a_client_command_leaves_the_control_plane_unloaded(command: list[str]) -> None:
    loaded = _loaded_after(
        "import contextlib\nfrom modelhost.cli import app\n"
        f"with contextlib.suppress(SystemExit):\n    app({command!r})\n"
    )
    assert _control_plane(loaded) == []


def test_the_probe_sees_the_control_plane_when_it_is_imported() -> None:
    """`modelhost server` imports the server inside its command; the probe must see it."""
    loaded = _loaded_after("import modelhost.server")
    assert "modelhost.server" in _control_plane(loaded)
