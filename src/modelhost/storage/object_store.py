"""The object store: where `s3://` URIs (ModelDataUrl, job inputs and outputs) live.

This is the interface the rest of modelhost sees; `FsspecObjectStore` (objects.py) is the
implementation, embedded (`<data-dir>/objects`) or over a real S3, and
`modelhost.storage.open_objects` picks from the settings. Both run the contract suite in
tests/storage/test_objects_contract.py.

URIs come from callers: one the store cannot or will not name an object by raises
`InvalidObjectURI` (a ValueError), a missing object `FileNotFoundError` naming the URI, a
prefix used as an object `IsADirectoryError`. Calls block (a bucket is a network round
trip away): code on the event loop calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import builtins
from typing import IO, Protocol


class InvalidObjectURI(ValueError):
    """A URI this store cannot or will not name an object by (a local path when those are
    off, a key that climbs out of its bucket, a segment too long for the embedded store):
    the caller's mistake, which a job or request reports as its failure, not a crash."""


class ObjectStore(Protocol):
    @property
    def uses_s3(self) -> bool:
        """Whether `s3://` URIs go to a real S3 service (objects other clients can reach
        by the same URI) rather than this machine's disk."""
        ...

    def exists(self, uri: str) -> bool:
        """Whether an object, or any object under the prefix/folder, exists at `uri`."""
        ...

    def is_file(self, uri: str) -> bool:
        """Whether `uri` names one object (as opposed to a prefix or nothing)."""
        ...

    def size(self, uri: str) -> int:
        """Size in bytes of the object at `uri`."""
        ...

    def content_type(self, uri: str) -> str | None:
        """The Content-Type the object was stored with, None when the store has none."""
        ...

    def list(self, prefix_uri: str) -> builtins.list[str]:
        """URIs of all objects under `prefix_uri`, recursively, sorted, with S3's
        key-prefix semantics for `s3://` (`s3://b/data` matches `s3://b/data.csv`)."""
        ...

    def open(self, uri: str, mode: str = "rb") -> IO[bytes]:
        """One object for streaming, "rb" or "wb". A write lands whole on close, as an
        S3 PUT does; leaving a `with` block by an exception writes nothing."""
        ...

    def get_bytes(self, uri: str) -> bytes:
        """The whole object in memory; for small objects (payloads, manifests) only."""
        ...

    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write a whole object."""
        ...
