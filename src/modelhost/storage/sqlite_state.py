"""The embedded state store: every resource and its tags in one SQLite file of the data
dir (see `modelhost.storage.state` for the interface, `modelhost.storage.sqlite` for how
the file is opened, checked and backed up)."""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from modelhost.domain import kinds
from modelhost.storage.sqlite import SqliteFile
from modelhost.storage.state import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS tags (
    arn TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (arn, key)
);
"""

#: The kinds whose names were unique regardless of case before the store settled it
#: (the API checked them): version 2 fills their `folded` column.
_FOLDED_KINDS = (
    kinds.MODEL,
    kinds.ENDPOINT_CONFIG,
    kinds.ENDPOINT,
    kinds.TRANSFORM_JOB,
    kinds.RECOMMENDATION_JOB,
    kinds.TRANSFORM_SCHEDULE,
)


def _add_folded(db: sqlite3.Connection) -> None:
    """Version 2: `folded`, the lower-cased name of a record inserted with fold_case,
    unique per kind (NULLs never clash)."""
    db.execute("ALTER TABLE resources ADD COLUMN folded TEXT")
    marks = ", ".join("?" * len(_FOLDED_KINDS))
    rows = db.execute(
        f"SELECT kind, name FROM resources WHERE kind IN ({marks})", _FOLDED_KINDS
    ).fetchall()
    db.executemany(
        "UPDATE resources SET folded = ? WHERE kind = ? AND name = ?",
        [(name.lower(), kind, name) for kind, name in rows],
    )
    db.execute("CREATE UNIQUE INDEX resources_folded ON resources (kind, folded)")


def _add_leases(db: sqlite3.Connection) -> None:
    """Version 3: leases, each held by one server until it expires (epoch seconds)."""
    db.execute(
        "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL)"
    )


#: Schema versions after the first (kept in PRAGMA user_version): version N + 2 is
#: reached by MIGRATIONS[N]. Never edit a released entry; add one.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_add_folded, _add_leases)


class SqliteStateStore(SqliteFile):
    """Thread-safe, one connection; SQLite calls here take microseconds, so callers on the
    event loop use it directly instead of paying for a thread hop."""

    local = True

    def __init__(self, path: Path, *, used_before: bool = False, unclean: bool = False) -> None:
        super().__init__(path, _SCHEMA, used_before=used_before, unclean=unclean)
        with self._transaction() as db:  # one server per data dir: no one else migrates
            version = max(db.execute("PRAGMA user_version").fetchone()[0], 1)
            for migration in MIGRATIONS[version - 1 :]:
                migration(db)
            db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")

    def insert(
        self,
        kind: str,
        name: str,
        record: Record,
        *,
        fold_case: bool = False,
        arn: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO resources (kind, name, folded, data) VALUES (?, ?, ?, ?)",
                (kind, name, name.lower() if fold_case else None, orjson.dumps(record)),
            )
            if cursor.rowcount != 1:
                return False
            if arn is not None:
                db.execute("DELETE FROM tags WHERE arn = ?", (arn,))
                db.executemany(
                    "INSERT INTO tags (arn, key, value) VALUES (?, ?, ?)",
                    [(arn, key, value) for key, value in (tags or {}).items()],
                )
            return True

    def put(self, kind: str, name: str, record: Record) -> None:
        """Add or replace; a replaced record keeps its `folded` name."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO resources (kind, name, data) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, name) DO UPDATE SET data = excluded.data",
                (kind, name, orjson.dumps(record)),
            )

    def modify(
        self, kind: str, name: str, change: Callable[[Record], Record | None]
    ) -> Record | None:
        """Read-modify-write one record atomically, so the API and the controllers can both
        write an endpoint without losing each other's fields. `change` returns the new
        record, or None to leave it as it is. Returns the stored record (None if absent)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT data FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
            if row is None:
                return None
            record = orjson.loads(row[0])
            updated = change(record)
            if updated is None:
                return record
            db.execute(
                "UPDATE resources SET data = ? WHERE kind = ? AND name = ?",
                (orjson.dumps(updated), kind, name),
            )
            return updated

    def get(self, kind: str, name: str) -> Record | None:
        with self._read() as db:
            row = db.execute(
                "SELECT data FROM resources WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def delete(self, kind: str, name: str, *, arn: str | None = None) -> bool:
        with self._transaction() as db:
            deleted = (
                db.execute(
                    "DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name)
                ).rowcount
                == 1
            )
            if deleted and arn is not None:
                db.execute("DELETE FROM tags WHERE arn = ?", (arn,))
            return deleted

    def list(self, kind: str) -> list[Record]:
        with self._read() as db:
            rows = db.execute(
                "SELECT data FROM resources WHERE kind = ? ORDER BY name", (kind,)
            ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def names(self, kind: str) -> builtins.list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT name FROM resources WHERE kind = ? ORDER BY name", (kind,)
            ).fetchall()
        return [row[0] for row in rows]

    def tags(self, arn: str) -> dict[str, str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT key, value FROM tags WHERE arn = ? ORDER BY key", (arn,)
            ).fetchall()
        return dict(rows)

    def set_tags(self, arn: str, tags: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO tags (arn, key, value) VALUES (?, ?, ?)",
                [(arn, key, value) for key, value in tags.items()],
            )

    def delete_tags(self, arn: str, keys: builtins.list[str] | None = None) -> None:
        """Remove the given tag keys, or every tag of the resource when keys is None."""
        with self._transaction() as db:
            if keys is None:
                db.execute("DELETE FROM tags WHERE arn = ?", (arn,))
            else:
                db.executemany(
                    "DELETE FROM tags WHERE arn = ? AND key = ?", [(arn, key) for key in keys]
                )

    def acquire(self, names: builtins.list[str], holder: str, ttl_s: float) -> set[str]:
        """One transaction; each lease taken by one upsert whose update only applies when
        the lease is `holder`'s or has expired (this machine's clock: one server per data
        dir)."""
        now = time.time()
        held = set()
        with self._transaction() as db:
            for name in sorted(set(names)):
                row = db.execute(
                    "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                    "expires = excluded.expires "
                    "WHERE leases.holder = excluded.holder OR leases.expires < ? "
                    "RETURNING name",
                    (name, holder, now + ttl_s, now),
                ).fetchone()
                if row is not None:
                    held.add(name)
        return held

    def release(self, names: builtins.list[str], holder: str) -> None:
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM leases WHERE name = ? AND holder = ?",
                [(name, holder) for name in names],
            )

    def holders(self, names: builtins.list[str]) -> dict[str, str]:
        marks = ", ".join("?" * len(names))
        with self._read() as db:
            rows = db.execute(
                f"SELECT name, holder FROM leases WHERE name IN ({marks}) AND expires >= ?",
                [*names, time.time()],
            ).fetchall()
        return dict(rows)
