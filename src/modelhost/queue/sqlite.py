"""The SQLite queue backend: one file next to the state store, for a single server.

A job is a row: the request as accepted (`data`, JSON, never changed) and the columns that
change as it moves along. Leasing is one `BEGIN IMMEDIATE` transaction, so two workers
never lease the same job. Every lease gets a fresh token and a deadline; a worker renews
its deadline while it works, and only the current token can change a leased job (one
UPDATE guarded by the token). A server killed mid-request leaves its leases behind;
`recover()` on start gives them back to the queue at once, since only this server uses
the file.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from modelhost.queue.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobCounts
from modelhost.storage.sqlite import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    created REAL NOT NULL,
    expires_at REAL NOT NULL,
    data BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    token TEXT NOT NULL DEFAULT '',
    lease_until REAL NOT NULL DEFAULT 0,
    error TEXT,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_endpoint ON jobs (endpoint, state, created);
-- Finished jobs pile up until their retention ends; finding the endpoints with work
-- must not scan them, and pruning finds them by when they finished.
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, endpoint);
CREATE INDEX IF NOT EXISTS jobs_by_finished ON jobs (finished) WHERE finished IS NOT NULL;
"""
_COLUMNS = "data, state, attempts, token, lease_until, error, finished"


def _job(row: tuple[Any, ...]) -> Job:
    data, state, attempts, token, lease_until, error, finished = row
    job = Job(**orjson.loads(data))
    job.state, job.attempts, job.token = state, attempts, token
    job.lease_until, job.error, job.finished = lease_until, error, finished
    return job


class SqliteQueue(SqliteFile):
    """Durability as the state store's (see `modelhost.storage.sqlite`): a committed
    request survives a killed server."""

    local = True

    def __init__(self, path: Path, *, used_before: bool = False, unclean: bool = False) -> None:
        super().__init__(path, _SCHEMA, used_before=used_before, unclean=unclean)

    def put(self, jobs: list[Job]) -> None:
        """Add jobs in one transaction: one commit for all the requests that arrived
        together is most of what accepting a request costs."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO jobs (id, endpoint, created, expires_at, data, state) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        job.id,
                        job.endpoint,
                        job.created,
                        job.expires_at,
                        orjson.dumps(job),
                        job.state,
                    )
                    for job in jobs
                ],
            )

    def recover(self) -> int:
        """Give every lease back: the workers that held them died with the last server."""
        with self._read() as db:
            return db.execute(
                "UPDATE jobs SET state = ?, token = '', lease_until = 0 WHERE state = ?",
                (QUEUED, RUNNING),
            ).rowcount

    def lease(self, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        """Up to `limit` jobs of the endpoint, oldest first, leased for `lease_s` seconds:
        running ones whose lease ran out, then queued ones whose backoff (if any) is over."""
        if limit <= 0:
            return []
        now = time.time()
        with self._transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM jobs WHERE endpoint = ? AND state = ? AND lease_until < ? "
                    "ORDER BY created LIMIT ?",
                    (endpoint, RUNNING, now, limit),
                )
            ]
            ids += [
                row[0]
                for row in db.execute(
                    "SELECT id FROM jobs WHERE endpoint = ? AND state = ? AND lease_until <= ? "
                    "ORDER BY created LIMIT ?",
                    (endpoint, QUEUED, now, limit - len(ids)),
                )
            ]
            return self._lease_ids(db, ids, now + lease_s)

    def expired(self, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        """Lease up to `limit` queued jobs whose RequestTTLSeconds ran out, so they can be
        failed even while no instance could take them."""
        now = time.time()
        with self._transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM jobs WHERE endpoint = ? AND state = ? AND expires_at < ? "
                    "ORDER BY created LIMIT ?",
                    (endpoint, QUEUED, now, limit),
                )
            ]
            return self._lease_ids(db, ids, now + lease_s)

    @staticmethod
    def _lease_ids(db: sqlite3.Connection, ids: list[str], until: float) -> list[Job]:
        return [
            _job(
                db.execute(
                    "UPDATE jobs SET state = ?, attempts = attempts + 1, token = ?, "
                    f"lease_until = ? WHERE id = ? RETURNING {_COLUMNS}",
                    (RUNNING, uuid.uuid4().hex, until, job_id),
                ).fetchone()
            )
            for job_id in ids
        ]

    def _update_held(self, job: Job, **change: Any) -> bool:
        """Apply `change` to the job if `job.token` still holds its lease."""
        assignments = ", ".join(f"{column} = ?" for column in change)
        with self._read() as db:
            updated = (
                db.execute(
                    f"UPDATE jobs SET {assignments} WHERE id = ? AND state = ? AND token = ?",
                    (*change.values(), job.id, RUNNING, job.token),
                ).rowcount
                == 1
            )
        if updated:
            for key, value in change.items():
                setattr(job, key, value)
        return updated

    def renew(self, job: Job, lease_s: float) -> bool:
        """Push the lease deadline out; False when the lease was lost."""
        return self._update_held(job, lease_until=time.time() + lease_s)

    def finish(self, job: Job, succeeded: bool, error: str | None = None) -> bool:
        """Record the outcome; False (and nothing changed) when the lease was lost."""
        return self._update_held(
            job,
            state=SUCCEEDED if succeeded else FAILED,
            error=error,
            finished=time.time(),
            lease_until=0.0,
            token="",
        )

    def retry(self, job: Job, error: str, delay_s: float = 0.0) -> bool:
        """Put the job back in the queue for another attempt, not before `delay_s` from now."""
        visible = time.time() + delay_s if delay_s > 0 else 0.0
        return self._update_held(job, state=QUEUED, error=error, token="", lease_until=visible)

    def get(self, job_id: str) -> Job | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def counts(self, endpoint: str) -> JobCounts:
        with self._read() as db:
            rows = dict(
                db.execute(
                    "SELECT state, COUNT(*) FROM jobs WHERE endpoint = ? GROUP BY state",
                    (endpoint,),
                ).fetchall()
            )
        return JobCounts(
            queued=rows.get(QUEUED, 0),
            running=rows.get(RUNNING, 0),
            failed=rows.get(FAILED, 0),
            succeeded=rows.get(SUCCEEDED, 0),
        )

    def endpoints(self) -> list[str]:
        """Endpoints with jobs waiting or running."""
        with self._read() as db:
            rows = db.execute(
                "SELECT DISTINCT endpoint FROM jobs WHERE state IN (?, ?)", (QUEUED, RUNNING)
            ).fetchall()
        return [row[0] for row in rows]

    def jobs(self, endpoint: str, state: str, limit: int = 100) -> list[Job]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE endpoint = ? AND state = ? "
                "ORDER BY created LIMIT ?",
                (endpoint, state, limit),
            ).fetchall()
        return [_job(row) for row in rows]

    def prune(self, finished_before: float, limit: int) -> int:
        """Delete up to `limit` finished jobs that ended before `finished_before`. Only
        finished jobs have `finished` set, and no worker holds them: a redelivered job is
        queued or running, never finished."""
        with self._read() as db:
            return db.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished < ? LIMIT ?)",
                (finished_before, limit),
            ).rowcount
