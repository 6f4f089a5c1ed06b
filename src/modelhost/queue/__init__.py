"""The durable queue of asynchronous inference requests: SQLite next to the state store
(one server, the default) or Redis (several servers sharing one queue)."""

from __future__ import annotations

from pathlib import Path

from modelhost.queue.backoff import backoff_s
from modelhost.queue.jobs import STATES, Job, JobCounts, JobQueue
from modelhost.queue.loop_queue import LoopQueue
from modelhost.queue.sqlite import SqliteQueue


def open_queue(url: str, sqlite_path: Path, **checks: bool) -> JobQueue:
    """`url` is MODELHOST_ASYNC_QUEUE: empty or "sqlite" for the file at `sqlite_path`
    (opened with `checks`, see `modelhost.storage.sqlite.SqliteFile`), or a redis://
    (rediss://, unix://) URL."""
    if not url or url == "sqlite":
        return SqliteQueue(sqlite_path, **checks)
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from modelhost.queue.redis_queue import RedisQueue
        except ImportError as exc:  # the optional extra is missing
            raise ValueError(
                "MODELHOST_ASYNC_QUEUE names Redis but the redis package is not installed; "
                "install modelhost[redis]"
            ) from exc
        return RedisQueue(url)
    raise ValueError(f"MODELHOST_ASYNC_QUEUE must be 'sqlite' or a redis:// URL, not {url!r}")


__all__ = [
    "STATES",
    "Job",
    "JobCounts",
    "JobQueue",
    "LoopQueue",
    "SqliteQueue",
    "backoff_s",
    "open_queue",
]
