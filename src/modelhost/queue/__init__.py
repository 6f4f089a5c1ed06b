"""The durable queue of asynchronous inference requests (SQLite by default)."""

from modelhost.queue.jobs import STATES, Job, JobCounts
from modelhost.queue.sqlite import SqliteQueue

__all__ = ["STATES", "Job", "JobCounts", "SqliteQueue"]
