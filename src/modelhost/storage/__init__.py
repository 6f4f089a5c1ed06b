"""Storage: durable state (SQLite), the object store (fsspec, embedded or S3) and
model-archive unpacking."""

from .archive import UnsafeArchiveError, prepare_model_dir
from .datadir import DataDirBusy, DataDirLock
from .guard import STORE_FILES, DataDirGuard, backup_rotating
from .objects import InvalidObjectURI, ObjectStore, configured_s3_endpoint
from .sqlite import StoreDamaged, StoreUnavailable, backup, restore
from .state import StateStore

__all__ = [
    "STORE_FILES",
    "DataDirBusy",
    "DataDirGuard",
    "DataDirLock",
    "InvalidObjectURI",
    "ObjectStore",
    "StateStore",
    "StoreDamaged",
    "StoreUnavailable",
    "UnsafeArchiveError",
    "backup",
    "backup_rotating",
    "configured_s3_endpoint",
    "prepare_model_dir",
    "restore",
]
