"""The queue as code on the event loop reaches it: every call awaited.

The embedded SQLite queue answers in microseconds, so its calls run directly, without
paying for a thread hop; a Redis queue's calls wait on a network round trip and run in
worker threads, so the event loop (which also serves /ping and every real-time
invocation) never blocks on Redis. The threads are the queue's own: a Redis server that
stalls holds them, not the threads the object store and the state store share, so the
rest of the server carries on while the queue waits. `call` does the same for
synchronous code that makes several queue calls in a row (a pass over endpoints), one
thread hop for all of them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from modelhost.queue.jobs import Job, JobCounts, JobQueue

T = TypeVar("T")

# Calls in flight at once against a remote queue: the accept path's batched puts, the
# dispatcher's passes and one lease renewal per running request, each one round trip.
_THREADS = 8


class LoopQueue:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._threads: ThreadPoolExecutor | None = (
            None if queue.local else ThreadPoolExecutor(_THREADS, thread_name_prefix="queue")
        )

    async def call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `call` (a queue call, or synchronous code that makes several) where it
        cannot block the loop: directly for a local queue, in one of the queue's threads
        otherwise. Code run this way must touch only the queue, never the router."""
        if self._threads is None:
            return call(*args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(call, *args, **kwargs)
        )

    async def put(self, jobs: list[Job]) -> None:
        await self.call(self.queue.put, jobs)

    async def recover(self) -> int:
        return await self.call(self.queue.recover)

    async def lease(self, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        return await self.call(self.queue.lease, endpoint, limit, lease_s)

    async def expired(self, endpoint: str, limit: int, lease_s: float) -> list[Job]:
        return await self.call(self.queue.expired, endpoint, limit, lease_s)

    async def renew(self, job: Job, lease_s: float) -> bool:
        return await self.call(self.queue.renew, job, lease_s)

    async def finish(self, job: Job, succeeded: bool, error: str | None = None) -> bool:
        return await self.call(self.queue.finish, job, succeeded, error)

    async def retry(self, job: Job, error: str, delay_s: float = 0.0) -> bool:
        return await self.call(self.queue.retry, job, error, delay_s)

    async def counts(self, endpoint: str) -> JobCounts:
        return await self.call(self.queue.counts, endpoint)

    async def endpoints(self) -> list[str]:
        return await self.call(self.queue.endpoints)

    async def prune(self, finished_before: float, limit: int) -> int:
        return await self.call(self.queue.prune, finished_before, limit)

    def close(self) -> None:
        """At shutdown, once nothing calls any more."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        self.queue.close()
