"""The shared state store: every resource and its tags in a PostgreSQL database, so
several servers can work on one state (see `modelhost.storage.state` for the interface).

Records are stored as the same orjson bytes the SQLite store keeps (`bytea`, not `jsonb`:
jsonb would reorder a record's keys). Names sort byte-wise (`COLLATE "C"`), as in SQLite,
whatever the database's collation. A name inserted with `fold_case` also fills `folded`,
whose unique index makes the database the arbiter of case-insensitive uniqueness, so two
servers creating "Iris" and "iris" at once cannot both succeed.

Connections come from a psycopg pool: a call waits at most `CALL_TIMEOUT_S` for one, and a
database that went away turns every call into `StoreUnavailable` (a SageMaker 503) until it
is back; the pool checks a connection before lending it, so the first call after the
database returns gets a fresh one. Calls block on a network round trip: `local` is False,
and callers on the event loop go through `modelhost.storage.LoopStore`.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from modelhost.storage.sqlite import StoreUnavailable
from modelhost.storage.state import Record
from modelhost.storage.unreachable import StoreUnreachable

log = logging.getLogger(__name__)

#: How long a call waits for a connection, and a new connection for the server.
CALL_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 5
#: The key of the advisory lock migrations run under (any bigint fixed for modelhost).
MIGRATION_LOCK = 0x6D6F64656C686F  # "modelho"

#: Schema versions in order: version N is reached by running MIGRATIONS[N - 1]. Never edit
#: a released entry; add one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE resources (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        folded TEXT,
        data BYTEA NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE UNIQUE INDEX resources_folded ON resources (kind, folded);
    CREATE TABLE tags (
        arn TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (arn, key)
    );
    """,
    # Leases: each unit of work owned by one server until it expires (the database's clock).
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires TIMESTAMPTZ NOT NULL
    );
    """,
)


def redact(url: str) -> str:
    """`url` without its password, for messages and logs; a URL too malformed to parse
    loses whatever stands between `user:` and `@`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parses the port: raises ValueError when it is no number)
    except ValueError:
        return re.sub(r"(//[^/@:]*:).*@", r"\1***@", url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStateStore:
    """Thread-safe: each call borrows a pooled connection for one transaction."""

    local = False

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        self.url = redact(url)
        try:  # one direct attempt first: its error says why, in one line
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = reason.replace(url, self.url)  # libpq quotes a URL it cannot parse
            raise StoreUnreachable(f"cannot reach the state store {self.url}: {reason}") from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=CALL_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True},
            check=ConnectionPool.check_connection,
            name="modelhost-state",
        )
        self._pool.open(wait=True, timeout=CALL_TIMEOUT_S * 2)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> None:
        """Bring the schema to the newest version. The advisory lock serialises servers
        starting at once: the second waits, then finds nothing left to do."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS modelhost_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM modelhost_schema").fetchone()
            version = row[0] if row else 0
            if version > len(MIGRATIONS):
                raise StoreUnreachable(
                    f"the state store {self.url} has schema version {version}, newer than "
                    f"this modelhost knows ({len(MIGRATIONS)}); upgrade modelhost"
                )
            for number in range(version, len(MIGRATIONS)):
                conn.execute(MIGRATIONS[number])
                log.info("state store %s migrated to schema version %d", self.url, number + 1)
            if row is None:
                conn.execute("INSERT INTO modelhost_schema VALUES (%s)", (len(MIGRATIONS),))
            elif version != len(MIGRATIONS):
                conn.execute("UPDATE modelhost_schema SET version = %s", (len(MIGRATIONS),))

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a lost database becomes `StoreUnavailable`."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"The state store {self.url} is unavailable ({reason}); retry shortly."
            ) from exc

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
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO resources (kind, name, folded, data) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (kind, name, name.lower() if fold_case else None, orjson.dumps(record)),
            )
            if cursor.rowcount != 1:
                return False
            if arn is not None:
                cursor.execute("DELETE FROM tags WHERE arn = %s", (arn,))
                if tags:
                    cursor.executemany(
                        "INSERT INTO tags (arn, key, value) VALUES (%s, %s, %s)",
                        [(arn, key, value) for key, value in tags.items()],
                    )
            return True

    def put(self, kind: str, name: str, record: Record) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO resources (kind, name, data) VALUES (%s, %s, %s) "
                "ON CONFLICT (kind, name) DO UPDATE SET data = EXCLUDED.data",
                (kind, name, orjson.dumps(record)),
            )

    def modify(
        self, kind: str, name: str, change: Callable[[Record], Record | None]
    ) -> Record | None:
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT data FROM resources WHERE kind = %s AND name = %s FOR UPDATE", (kind, name)
            ).fetchone()
            if row is None:
                return None
            record: Record = orjson.loads(row[0])
            updated = change(record)
            if updated is None:
                return record
            conn.execute(
                "UPDATE resources SET data = %s WHERE kind = %s AND name = %s",
                (orjson.dumps(updated), kind, name),
            )
            return updated

    def get(self, kind: str, name: str) -> Record | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM resources WHERE kind = %s AND name = %s", (kind, name)
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def delete(self, kind: str, name: str, *, arn: str | None = None) -> bool:
        with self._connection() as conn, conn.transaction():
            deleted = (
                conn.execute(
                    "DELETE FROM resources WHERE kind = %s AND name = %s", (kind, name)
                ).rowcount
                == 1
            )
            if deleted and arn is not None:
                conn.execute("DELETE FROM tags WHERE arn = %s", (arn,))
            return deleted

    def list(self, kind: str) -> builtins.list[Record]:
        with self._connection() as conn:
            rows = conn.execute(
                'SELECT data FROM resources WHERE kind = %s ORDER BY name COLLATE "C"', (kind,)
            ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def names(self, kind: str) -> builtins.list[str]:
        with self._connection() as conn:
            rows = conn.execute(
                'SELECT name FROM resources WHERE kind = %s ORDER BY name COLLATE "C"', (kind,)
            ).fetchall()
        return [row[0] for row in rows]

    def tags(self, arn: str) -> dict[str, str]:
        with self._connection() as conn:
            rows = conn.execute(
                'SELECT key, value FROM tags WHERE arn = %s ORDER BY key COLLATE "C"', (arn,)
            ).fetchall()
        return {key: value for key, value in rows}

    def set_tags(self, arn: str, tags: dict[str, str]) -> None:
        if not tags:
            return
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO tags (arn, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (arn, key) DO UPDATE SET value = EXCLUDED.value",
                [(arn, key, value) for key, value in tags.items()],
            )

    def delete_tags(self, arn: str, keys: builtins.list[str] | None = None) -> None:
        with self._connection() as conn:
            if keys is None:
                conn.execute("DELETE FROM tags WHERE arn = %s", (arn,))
            else:
                conn.execute("DELETE FROM tags WHERE arn = %s AND key = ANY(%s)", (arn, keys))

    def acquire(self, names: builtins.list[str], holder: str, ttl_s: float) -> set[str]:
        """One upsert for every lease: the update applies only where the lease is
        `holder`'s or has expired, by the database's clock, so servers whose clocks differ
        still agree. A second server racing for a free lease waits on the first one's row
        and then finds it held. Names go in sorted, so two servers lock rows in the same
        order and never deadlock."""
        if not names:
            return set()
        with self._connection() as conn:
            rows = conn.execute(
                "INSERT INTO leases (name, holder, expires) "
                "SELECT n, %(holder)s, clock_timestamp() + %(ttl)s * interval '1 second' "
                'FROM unnest(%(names)s::text[]) AS n ORDER BY n COLLATE "C" '
                "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
                "expires = EXCLUDED.expires "
                "WHERE leases.holder = EXCLUDED.holder OR leases.expires < clock_timestamp() "
                "RETURNING name",
                {"holder": holder, "ttl": ttl_s, "names": sorted(set(names))},
            ).fetchall()
        return {row[0] for row in rows}

    def release(self, names: builtins.list[str], holder: str) -> None:
        if not names:
            return
        with self._connection() as conn:
            conn.execute("DELETE FROM leases WHERE name = ANY(%s) AND holder = %s", (names, holder))

    def holders(self, names: builtins.list[str]) -> dict[str, str]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT name, holder FROM leases WHERE name = ANY(%s) "
                "AND expires >= clock_timestamp()",
                (names,),
            ).fetchall()
        return {name: holder for name, holder in rows}

    def close(self) -> None:
        self._pool.close()
