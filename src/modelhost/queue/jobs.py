"""One queued asynchronous inference request, as every queue backend stores it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Job states. A job is `queued` until a worker leases it (`running`); it ends `succeeded`
# or `failed`. A lease that runs out puts a `running` job back in reach of any worker.
# As with an SQS message's visibility timeout, a job is out of reach of `lease()` until
# `lease_until`: for a running job the end of its lease, for a queued job that failed an
# attempt the time of its next attempt (its backoff).
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED)


@dataclass
class Job:
    id: str
    endpoint: str
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str
    created: float
    expires_at: float
    timeout_s: float
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    # The endpoint config's NotificationConfig at the time of the request.
    notification: dict[str, Any] = field(default_factory=dict)
    state: str = QUEUED
    attempts: int = 0
    # Who holds the lease now: a new token per lease, so a worker whose lease ran out
    # (and was given to another) cannot complete the job any more.
    token: str = ""
    # Not leased again before this time: the lease's deadline while running, the next
    # attempt's time while queued after a failed attempt (0: at once).
    lease_until: float = 0.0
    error: str | None = None
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobCounts:
    queued: int
    running: int
    failed: int
    succeeded: int

    @property
    def backlog(self) -> int:
        """CloudWatch's ApproximateBacklogSize: waiting plus being processed."""
        return self.queued + self.running


class JobQueue(Protocol):
    """What the accept path and the workers need of a queue backend. Leasing is atomic
    (no job goes to two workers at once) and every change to a leased job requires the
    lease's token, so a worker whose lease ran out cannot overwrite its successor's work.
    Calls are synchronous; code on the event loop reaches the queue through `LoopQueue`
    (loop_queue.py), which runs them in a thread when the backend is not `local`."""

    #: True when a call never leaves the process (the embedded SQLite file): quick enough
    #: to make on the event loop. False when it waits on a network round trip (Redis).
    local: bool

    def put(self, jobs: list[Job]) -> None: ...
    def recover(self) -> int: ...
    def lease(self, endpoint: str, limit: int, lease_s: float) -> list[Job]: ...
    def expired(self, endpoint: str, limit: int, lease_s: float) -> list[Job]: ...
    def renew(self, job: Job, lease_s: float) -> bool: ...
    def finish(self, job: Job, succeeded: bool, error: str | None = None) -> bool: ...
    def retry(self, job: Job, error: str, delay_s: float = 0.0) -> bool:
        """Give the job back for another attempt, out of reach of `lease()` for `delay_s`
        seconds (still counted as queued, and still failed by `expired()` when its TTL runs
        out meanwhile); False when the lease was lost."""
        ...

    def get(self, job_id: str) -> Job | None: ...
    def counts(self, endpoint: str) -> JobCounts: ...
    def endpoints(self) -> list[str]: ...
    def jobs(self, endpoint: str, state: str, limit: int = 100) -> list[Job]: ...
    def prune(self, finished_before: float, limit: int) -> int: ...
    def close(self) -> None: ...
