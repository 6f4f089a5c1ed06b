"""`open_store` and MODELHOST_STATE_URL: which state store the settings name, and the data
dir guard's checks applied through the factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.config import Settings
from modelhost.storage import DataDirGuard, SqliteStateStore, StoreDamaged, open_store


@pytest.mark.parametrize("url", ["", "sqlite", "sqlite://", "sqlite:///{data_dir}/state.db"])
def test_every_spelling_of_the_embedded_store_opens_the_data_dirs_file(
        tmp_path: Path, url: str) -> None:
    store = open_store(Settings(data_dir=tmp_path, state_url=url.format(data_dir=tmp_path)))
    try:
        assert isinstance(store, SqliteStateStore)
        assert store.path == tmp_path / "state.db"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["postgresql://db.example/modelhost", "mysql://x", "redis"])
def test_other_state_urls_are_refused_naming_the_supported_schemes(
        tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match=r"^MODELHOST_STATE_URL=.*: unsupported state store; "
                                         r"supported schemes: sqlite \(empty: the embedded"):
        Settings(data_dir=tmp_path, state_url=url)


def test_a_sqlite_file_outside_the_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the SQLite state store is the data dir's own file"):
        Settings(data_dir=tmp_path / "data", state_url=f"sqlite:///{tmp_path}/elsewhere.db")


def test_the_guard_checks_and_watches_the_store_it_opens(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    guard = DataDirGuard(tmp_path)
    store = open_store(settings, guard)
    store.put("model", "m", {"ModelName": "m"})
    assert guard.files == [store]
    store.close()
    guard.release()

    # The data dir held state: a store file gone missing is refused, not started afresh.
    (tmp_path / "state.db").unlink()
    guard = DataDirGuard(tmp_path)
    try:
        with pytest.raises(StoreDamaged, match="missing or empty, but this data dir held state"):
            open_store(settings, guard)
    finally:
        guard.abandon()
