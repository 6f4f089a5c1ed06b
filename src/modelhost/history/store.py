"""Where metric history lives: a SQLite file beside the state store (<data-dir>/metrics.db).

Resolutions as CloudWatch keeps them: 10 s points for a short retention (a day by
default), 1-minute, 5-minute and 1-hour rollups for a long one (15 days). Every write
goes to each, merging into a point already there, so a rollup is always the exact
merge of its 10 s points and a query picks the coarsest resolution its period allows.
A point is a row of count, sum, min and max and one of its sketch (see distribution.py),
about 60 bytes plus 12 per bucket.

Its own file, not the state store's database: metrics are written every few seconds and
must never wait on, or hold up, the control plane's lock, and losing them loses no state.
With a PostgreSQL state store each server keeps its own file in its own data dir, holding
the endpoints it runs (an endpoint's instances run on one server), so a query answers
from the server it is sent to.

Every method blocks: callers run them off the event loop (the recorder's writer thread,
the control plane's worker threads). Writes take one lock; reads use a connection of
their own thread (WAL), so a long query does not hold up a flush.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson

from modelhost.history.distribution import Distribution

#: (namespace, metric name, sorted (dimension name, value) pairs)
SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]
HIGH_RESOLUTION = 10
STANDARD_RESOLUTION = 60
#: Finest first. The 5-minute and hourly rollups keep long charts cheap: a day at
#: Period=300 reads 288 points a series, not 1,440 minutes or 8,640 10 s points.
RESOLUTIONS = (HIGH_RESOLUTION, STANDARD_RESOLUTION, 300, 3600)


def retention(high_resolution_s: float, standard_s: float) -> dict[int, float]:
    """How long each resolution is kept: 10 s points for the first, the rollups for the
    second."""
    return {r: high_resolution_s if r == HIGH_RESOLUTION else standard_s for r in RESOLUTIONS}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    dimensions TEXT NOT NULL,
    unit TEXT NOT NULL,
    last_ts INTEGER NOT NULL,
    UNIQUE (namespace, name, dimensions)
);
CREATE TABLE IF NOT EXISTS points (
    series INTEGER NOT NULL,
    resolution INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    count REAL NOT NULL,
    total REAL NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    PRIMARY KEY (series, resolution, ts)
) WITHOUT ROWID;
-- Apart from the numbers, so that the five plain statistics scan small rows.
CREATE TABLE IF NOT EXISTS sketches (
    series INTEGER NOT NULL,
    resolution INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (series, resolution, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_age ON points (resolution, ts);
CREATE INDEX IF NOT EXISTS sketches_age ON sketches (resolution, ts);
"""


@dataclass(frozen=True)
class Point:
    """What a writer hands the store: one metric's values in one 10 s slot (or the
    timestamp a PutMetricData datum names)."""

    series: SeriesKey
    unit: str
    timestamp: float
    values: Distribution


@dataclass(frozen=True)
class Series:
    id: int
    key: SeriesKey
    unit: str
    last_ts: int


class Aggregates(NamedTuple):
    """The periods of a series that hold data, as columns (a day at 5 minutes is 288
    periods a series: one numpy array each, not a Python object per period): each
    period's start and the exact statistic set of every point in it."""

    starts: np.ndarray  # int64
    samples: np.ndarray
    total: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray


_NO_AGGREGATES = Aggregates(
    np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0), np.empty(0)
)


def dimensions_key(dimensions: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dimensions))


class MetricStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._ids: dict[SeriesKey, int] = {}
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        # A day of charts reads tens of MB: mapped, not copied through a 2 MB page cache.
        connection.execute("PRAGMA mmap_size=268435456")
        connection.execute("PRAGMA cache_size=-16384")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            with self._lock:
                self._readers.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()
            self._writer.close()

    # -- writing ---------------------------------------------------------------------

    def write(self, points: Iterable[Point]) -> None:
        """Merge the points into both resolutions, in one transaction."""
        merged: dict[tuple[SeriesKey, int, int], Distribution] = {}
        units: dict[SeriesKey, str] = {}
        for point in points:
            units[point.series] = point.unit
            for resolution in RESOLUTIONS:
                slot = int(point.timestamp // resolution * resolution)
                into = merged.get((point.series, resolution, slot))
                if into is None:
                    into = merged[(point.series, resolution, slot)] = Distribution()
                into.merge(point.values)
        if not merged:
            return
        with self._lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                last: dict[int, tuple[int, str]] = {}
                rows = []
                for (series, resolution, slot), values in merged.items():
                    sid = self._series_id(series, units[series], slot)
                    last[sid] = (max(last.get(sid, (0, ""))[0], slot), units[series])
                    old = db.execute(
                        "SELECT count, total, minimum, maximum, sketch FROM points "
                        "JOIN sketches USING (series, resolution, ts) "
                        "WHERE series = ? AND resolution = ? AND ts = ?",
                        (sid, resolution, slot),
                    ).fetchone()
                    if old is not None:
                        values = _merged(Distribution.from_row(*old), values)
                    rows.append(
                        (
                            sid,
                            resolution,
                            slot,
                            values.count,
                            values.total,
                            values.minimum,
                            values.maximum,
                            values.sketch(),
                        )
                    )
                db.executemany(
                    "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [row[:7] for row in rows],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO sketches VALUES (?, ?, ?, ?)",
                    [(*row[:3], row[7]) for row in rows],
                )
                db.executemany(
                    "UPDATE series SET last_ts = max(last_ts, ?), unit = ? WHERE id = ?",
                    [(ts, unit, sid) for sid, (ts, unit) in last.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._ids.clear()
                raise

    def _series_id(self, series: SeriesKey, unit: str, slot: int) -> int:
        sid = self._ids.get(series)
        if sid is not None:
            return sid
        namespace, name, dimensions = series
        encoded = orjson.dumps(dimensions).decode()
        row = self._writer.execute(
            "SELECT id FROM series WHERE namespace = ? AND name = ? AND dimensions = ?",
            (namespace, name, encoded),
        ).fetchone()
        if row is None:
            row = self._writer.execute(
                "INSERT INTO series (namespace, name, dimensions, unit, last_ts) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (namespace, name, encoded, unit, slot),
            ).fetchone()
        sid = self._ids[series] = int(row[0])
        return sid

    def prune(self, now: float, retention_s: dict[int, float], max_bytes: int) -> int:
        """Drop points past their resolution's retention, then the oldest points until
        the file holds at most `max_bytes` of live pages (freed pages are reused, so the
        file stays about that size), then series with no point left. Returns the number
        of points deleted."""
        deleted = 0
        with self._lock:
            db = self._writer
            for resolution, keep_s in retention_s.items():
                deleted += self._delete_before(resolution, int(now - keep_s))
            for _ in range(64):
                if self._used_bytes() <= max_bytes:
                    break
                deleted += self._drop_oldest()
            removed = db.execute(
                "DELETE FROM series WHERE NOT EXISTS "
                "(SELECT 1 FROM points WHERE points.series = series.id) "
                "AND last_ts < ?",
                (int(now - max(retention_s.values(), default=0)),),
            ).rowcount
            if removed:
                self._ids.clear()
        return deleted

    def _used_bytes(self) -> int:
        db = self._writer
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _drop_oldest(self) -> int:
        """A tenth of the span of the finest points left (10 s points go first: the
        rollups keep their summary)."""
        db = self._writer
        for resolution in RESOLUTIONS:
            low, high = db.execute(
                "SELECT min(ts), max(ts) FROM points WHERE resolution = ?", (resolution,)
            ).fetchone()
            if low is None:
                continue
            return self._delete_before(resolution, low + max((high - low) // 10, resolution))
        return 0

    def _delete_before(self, resolution: int, cut: int) -> int:
        db = self._writer
        db.execute("DELETE FROM sketches WHERE resolution = ? AND ts < ?", (resolution, cut))
        return int(
            db.execute(
                "DELETE FROM points WHERE resolution = ? AND ts < ?", (resolution, cut)
            ).rowcount
        )

    def used_bytes(self) -> int:
        with self._lock:
            return self._used_bytes()

    # -- reading ---------------------------------------------------------------------

    def find(self, series: SeriesKey) -> Series | None:
        namespace, name, dimensions = series
        row = (
            self._reader()
            .execute(
                "SELECT id, unit, last_ts FROM series "
                "WHERE namespace = ? AND name = ? AND dimensions = ?",
                (namespace, name, orjson.dumps(dimensions).decode()),
            )
            .fetchone()
        )
        return None if row is None else Series(row[0], series, row[1], row[2])

    def all_series(self, namespace: str | None, name: str | None) -> Iterator[Series]:
        """Series in (namespace, name, dimensions) order, optionally of one namespace
        and/or metric name."""
        clauses, args = [], []
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(namespace)
        if name is not None:
            clauses.append("name = ?")
            args.append(name)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        for sid, ns, metric, dims, unit, last_ts in self._reader().execute(
            f"SELECT id, namespace, name, dimensions, unit, last_ts FROM series {where} "
            "ORDER BY namespace, name, dimensions",
            args,
        ):
            pairs = tuple((str(k), str(v)) for k, v in orjson.loads(dims))
            yield Series(sid, (ns, metric, pairs), unit, last_ts)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """The reads inside see one version of the file (a WAL read transaction): a
        period's numbers and its sketches agree even while a flush lands between them."""
        db = self._reader()
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    def aggregates(
        self, series: int, resolution: int, start: int, end: int, period: int
    ) -> Aggregates:
        """The series in [start, end) by periods counted from `start`: the points in key
        order, folded per period with numpy (SQLite's GROUP BY sorts them again)."""
        rows = (
            self._reader()
            .execute(
                "SELECT ts, count, total, minimum, maximum FROM points WHERE series = ? "
                "AND resolution = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (series, resolution, start, end),
            )
            .fetchall()
        )
        if not rows:
            return _NO_AGGREGATES
        table = np.array(rows, dtype=np.float64)
        owners = (table[:, 0].astype(np.int64) - start) // period
        firsts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        return Aggregates(
            start + owners[firsts] * period,
            np.add.reduceat(table[:, 1], firsts),
            np.add.reduceat(table[:, 2], firsts),
            np.minimum.reduceat(table[:, 3], firsts),
            np.maximum.reduceat(table[:, 4], firsts),
        )

    def sketches(
        self, series: int, resolution: int, start: int, end: int, period: int
    ) -> tuple[np.ndarray, list[bytes]]:
        """The points' sketches in [start, end), and the index of each one's period."""
        rows = (
            self._reader()
            .execute(
                "SELECT (ts - ?) / ?, sketch FROM sketches WHERE series = ? AND resolution = ? "
                "AND ts >= ? AND ts < ?",
                (start, period, series, resolution, start, end),
            )
            .fetchall()
        )
        if not rows:
            return np.empty(0, np.int64), []
        owners, blobs = zip(*rows, strict=True)
        return np.array(owners, dtype=np.int64), list(blobs)


def _merged(old: Distribution, new: Distribution) -> Distribution:
    old.merge(new)
    return old
