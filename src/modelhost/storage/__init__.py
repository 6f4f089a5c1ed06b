"""Storage: the state store and the object store behind one Protocol each, opened from
the settings by `open_store` and `open_objects`; SQLite file handling (checks, backup,
restore), the data dir's lock and guard, and model-archive unpacking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .archive import (
    ModelDataTimeout,
    UnsafeArchiveError,
    check_model_data,
    prepare_model_dir,
)
from .datadir import DataDirBusy, DataDirLock, server_id
from .guard import STORE_FILES, DataDirGuard, backup_rotating
from .loop_store import LoopStore
from .migration import MigrationReport, TargetNotEmpty, copy_state
from .object_store import InvalidObjectURI, ObjectStore
from .objects import FsspecObjectStore, configured_s3_endpoint
from .ownership import Ownership, lease
from .sqlite import StoreDamaged, StoreUnavailable, backup, restore
from .sqlite_state import SqliteStateStore
from .state import Record, StateStore
from .unreachable import StoreUnreachable

if TYPE_CHECKING:
    from modelhost.config import Settings


def open_store(settings: Settings, guard: DataDirGuard | None = None) -> StateStore:
    """The state store `settings.state_url` names (MODELHOST_STATE_URL, checked when the
    settings were made). A SQLite file is opened with the checks `guard` derives from the
    data dir's lock (see `DataDirGuard.checks`) and watched and backed up by it; a
    PostgreSQL database is left to its own server (raises `StoreUnreachable` when it
    cannot be reached)."""
    from modelhost.config import state_scheme

    scheme = state_scheme(settings.state_url)
    if scheme == "postgresql":
        return open_postgres(settings.state_url)
    if scheme != "sqlite":  # Settings refuses other schemes before anything opens
        raise ValueError(f"no state store implements {scheme!r}")
    path = settings.state_path
    store = SqliteStateStore(path, **(guard.checks(path) if guard else {}))
    if guard is not None:
        guard.track(store)
    return store


def open_postgres(url: str) -> StateStore:
    """The PostgreSQL state store at `url`. Its driver is an optional extra: without it,
    a ValueError (one line at start) that says what to install, not an ImportError."""
    try:
        from .postgres_state import PostgresStateStore
    except ModuleNotFoundError as exc:
        if exc.name not in ("psycopg", "psycopg_pool"):
            raise
        raise ValueError(
            f"a postgresql:// state store needs the {exc.name} package, which is not "
            "installed: install the postgres extra (pip install 'modelhost[postgres]')"
        ) from None
    return PostgresStateStore(url)


def open_objects(settings: Settings) -> ObjectStore:
    """Embedded or real S3, picked the way the operator configured AWS tools:
    MODELHOST_S3=local forces the embedded `<data-dir>/objects`; otherwise an S3 endpoint
    from botocore's own resolution (`configured_s3_endpoint`) is used; MODELHOST_S3=aws
    means AWS's own S3 with no custom endpoint; else embedded."""
    local = settings.allow_local_paths
    if settings.s3 == "local":
        return FsspecObjectStore(settings.objects_dir, allow_local_paths=local)
    endpoint = configured_s3_endpoint()
    if endpoint:
        return FsspecObjectStore(settings.objects_dir, endpoint, allow_local_paths=local)
    return FsspecObjectStore(
        settings.objects_dir, real_s3=settings.s3 == "aws", allow_local_paths=local
    )


__all__ = [
    "STORE_FILES",
    "DataDirBusy",
    "DataDirGuard",
    "DataDirLock",
    "FsspecObjectStore",
    "InvalidObjectURI",
    "LoopStore",
    "MigrationReport",
    "ModelDataTimeout",
    "ObjectStore",
    "Ownership",
    "Record",
    "SqliteStateStore",
    "StateStore",
    "StoreDamaged",
    "StoreUnavailable",
    "StoreUnreachable",
    "TargetNotEmpty",
    "UnsafeArchiveError",
    "backup",
    "backup_rotating",
    "check_model_data",
    "configured_s3_endpoint",
    "copy_state",
    "lease",
    "open_objects",
    "open_postgres",
    "open_store",
    "prepare_model_dir",
    "restore",
    "server_id",
]
