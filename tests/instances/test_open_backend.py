"""`open_backend`: the one place settings become an instance backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.config import Settings
from modelhost.instances import ContainerBackend, ProcessBackend, RoutingBackend, open_backend
from modelhost.instances.cgroups import scope_key


def test_the_process_backend_is_configured_from_the_settings(tmp_path: Path) -> None:
    backend = open_backend(
        Settings(data_dir=tmp_path, fork_server=False, cgroups="off", cpu_scale=0.5)
    )
    assert isinstance(backend, RoutingBackend) and backend.default == "process"
    processes = backend.processes
    assert isinstance(processes, ProcessBackend)
    # What the settings say reaches the backend (its parts are private to it).
    assert processes._forkserver is None
    assert (processes._cgroups_mode, processes._cpu_scale) == ("off", 0.5)
    assert processes._scope == scope_key(tmp_path) and processes._data_dir == tmp_path


def test_the_container_backend_is_configured_from_the_settings(tmp_path: Path) -> None:
    backend = open_backend(
        Settings(
            data_dir=tmp_path,
            instance_backend="container",
            container_host="unix:///run/engine.sock",
            cpu_scale=0.5,
        )
    )
    assert isinstance(backend, RoutingBackend) and backend.default == "container"
    containers = backend.containers
    assert isinstance(containers, ContainerBackend)
    assert containers._engine.configured == "unix:///run/engine.sock"
    assert containers._engine.scope == scope_key(tmp_path)
    assert containers._cpu_scale == 0.5


def test_an_unknown_backend_is_refused_naming_those_there_are(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown instance backend 'kubernetes'; available: "
        r"process, container, ray",
    ):
        open_backend(Settings(data_dir=tmp_path, instance_backend="kubernetes"))
