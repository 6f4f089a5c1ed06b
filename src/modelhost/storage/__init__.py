"""Storage: durable state (SQLite), the object store (fsspec, embedded or S3) and
model-archive unpacking."""

from .archive import UnsafeArchiveError, prepare_model_dir
from .objects import ObjectStore, configured_s3_endpoint
from .state import StateStore

__all__ = [
    "ObjectStore",
    "StateStore",
    "UnsafeArchiveError",
    "configured_s3_endpoint",
    "prepare_model_dir",
]
