"""`open_store` and MODELHOST_STATE_URL: which state store the settings name, and the data
dir guard's checks applied through the factory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from modelhost.config import Settings
from modelhost.storage import DataDirGuard, SqliteStateStore, StoreDamaged, open_store
from modelhost.storage.postgres_state import PostgresStateStore
from tests.support.postgres import PostgresServer


@pytest.mark.parametrize("url", ["", "sqlite", "sqlite://", "sqlite:///{data_dir}/state.db"])
def test_every_spelling_of_the_embedded_store_opens_the_data_dirs_file(
    tmp_path: Path, url: str
) -> None:
    store = open_store(Settings(data_dir=tmp_path, state_url=url.format(data_dir=tmp_path)))
    try:
        assert isinstance(store, SqliteStateStore)
        assert store.path == tmp_path / "state.db"
    finally:
        store.close()


@pytest.mark.parametrize("url", ["mysql://x", "redis", "postgresq://db/x"])
def test_other_state_urls_are_refused_naming_the_supported_schemes(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(
        ValueError,
        match=r"^MODELHOST_STATE_URL=.*: unsupported state store; "
        r"supported schemes: sqlite, postgresql, postgres "
        r"\(empty: the embedded",
    ):
        Settings(data_dir=tmp_path, state_url=url)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_opens_the_shared_store(
    tmp_path: Path, postgres: PostgresServer, scheme: str
) -> None:
    url = postgres.new_database().replace("postgresql://", f"{scheme}://", 1)
    store = open_store(Settings(data_dir=tmp_path, state_url=url))
    try:
        assert isinstance(store, PostgresStateStore)
        assert not (tmp_path / "state.db").exists()
    finally:
        store.close()


def test_an_old_sqlite_file_gets_case_insensitive_names_of_what_it_holds(tmp_path: Path) -> None:
    """A file from before schema versions: its created names take part in the
    case-insensitive uniqueness the store now settles."""
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript("""
        CREATE TABLE resources (kind TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
                                PRIMARY KEY (kind, name));
        CREATE TABLE tags (arn TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                           PRIMARY KEY (arn, key));
        INSERT INTO resources VALUES ('model', 'Iris', '{"n": 1}');
        INSERT INTO resources VALUES ('scaling_policy', 'P', '{"n": 2}');
    """)
    db.close()
    for _ in range(2):  # migrated once, then opened as it is
        store = open_store(Settings(data_dir=tmp_path))
        try:
            assert store.get("model", "Iris") == {"n": 1}
            assert not store.insert("model", "iris", {}, fold_case=True)
            assert store.insert("scaling_policy", "p", {}, fold_case=True)
            assert store.delete("scaling_policy", "p")
        finally:
            store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (3,)
        assert db.execute("SELECT count(*) FROM leases").fetchone() == (0,)
    finally:
        db.close()


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
