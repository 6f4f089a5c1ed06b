"""`open_backend`: the one place settings become an instance backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.config import Settings
from modelhost.instances import ProcessBackend, open_backend
from modelhost.instances.cgroups import scope_key


def test_the_process_backend_is_configured_from_the_settings(tmp_path: Path) -> None:
    backend = open_backend(Settings(data_dir=tmp_path, fork_server=False, cgroups="off",
                                    cpu_scale=0.5))
    assert isinstance(backend, ProcessBackend)
    # What the settings say reaches the backend (its parts are private to it).
    assert backend._forkserver is None
    assert (backend._cgroups_mode, backend._cpu_scale) == ("off", 0.5)
    assert backend._scope == scope_key(tmp_path) and backend._data_dir == tmp_path


def test_an_unknown_backend_is_refused_naming_those_there_are(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown instance backend 'ray'; available: process"):
        open_backend(Settings(data_dir=tmp_path, instance_backend="ray"))
