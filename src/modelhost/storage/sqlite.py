"""One SQLite file used from many threads: the connection setup the state store and the
SQLite queue share.

WAL lets readers go on while a writer commits. synchronous=NORMAL in WAL mode: a committed
write survives a killed server (the WAL is written before COMMIT returns); only a power cut
may lose the last few. FULL would cost an fsync per write. One connection guarded by a
lock is enough: calls take microseconds, so callers on the event loop use it directly
instead of paying for a thread hop.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteFile:
    """Base of a store kept in one SQLite file: `_transaction` is one `BEGIN IMMEDIATE`
    transaction, so two threads never interleave writes."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(schema)
        self._lock = threading.RLock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
