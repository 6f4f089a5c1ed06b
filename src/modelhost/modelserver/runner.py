"""Threads that run model code off the event loop.

The event loop must keep answering ``/ping`` while a model call takes seconds, so model code
runs on ``SAGEMAKER_MODEL_SERVER_WORKERS`` threads. This is what
``loop.run_in_executor(ThreadPoolExecutor(...))`` does, minus its bookkeeping: no
``concurrent.futures.Future`` (with its lock and condition) chained to an asyncio future, no
thread-count adjustment per call. Measured on a 2-core machine with a 3-row iris request,
that bookkeeping cost ~50 µs of a ~0.45 ms round trip; this handoff costs about what running
the model on the loop thread would, plus the two thread wake-ups no design can avoid.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from modelhost.modelserver.errors import describe


class _Settable(Protocol):
    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exc: BaseException, /) -> None: ...


_Item = tuple[asyncio.AbstractEventLoop, _Settable, Callable[..., Any], tuple[Any, ...]]


class ModelRunner:
    """``workers`` daemon threads taking calls from one queue, answering through the loop."""

    def __init__(self, workers: int, name: str = "model") -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        #: Calls queued or running, counted on the loop's thread (see modelserver.inline).
        self.in_flight = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on a worker thread; await the returned future for its result."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.in_flight += 1
        self._queue.put((loop, future, fn, args))
        return future

    def then(self, done: Callable[[Any], None], fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker thread, then have the loop call ``done`` with its
        result, or with what it raised: for a caller that does not await, one loop wake-up
        and no future."""
        self.in_flight += 1
        self._queue.put((asyncio.get_running_loop(), _Then(done), fn, args))

    def idle(self) -> asyncio.Future[None]:
        """A future done when no call is queued or running any more: await it while
        ``in_flight`` (another call may have been submitted by the time it is done)."""
        waiter = asyncio.get_running_loop().create_future()
        if self.in_flight:
            self._idle_waiters.append(waiter)
        else:
            waiter.set_result(None)
        return waiter

    def shutdown(self) -> None:
        """Let idle threads end; a call in progress finishes (threads are daemons anyway)."""
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        get = self._queue.get
        while (item := get()) is not None:
            self._run(*item)
            # Drop the reference now: an idle thread must not keep the last request alive.
            item = None

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        future: _Settable,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            deliver(loop, self._finish, future, as_exception(exc), True)
        else:
            deliver(loop, self._finish, future, result, False)

    def _finish(self, future: _Settable, outcome: Any, raised: bool) -> None:
        self.in_flight -= 1
        if not self.in_flight and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():  # cancelled: its client went away
                    waiter.set_result(None)
        if future.done():  # cancelled: the client went away
            return
        if raised:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class _Then:
    """What :meth:`ModelRunner.then` queues in place of a future: it hands the result,
    or the exception, to a callback."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callback = callback

    def done(self) -> bool:
        return False

    def set_result(self, result: Any, /) -> None:
        self.callback(result)

    def set_exception(self, exc: BaseException, /) -> None:
        self.callback(exc)


def as_exception(exc: BaseException) -> Exception:
    """What model code raised, as an Exception to hand to the loop: SystemExit & co. would
    stop the event loop if re-raised in a task."""
    if isinstance(exc, Exception):
        return exc
    return RuntimeError(f"model code raised {describe(exc)}")


def deliver(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """From a worker thread, have the loop call `callback(*args)`."""
    # RuntimeError: the loop is closed; the server is gone and nobody waits for this.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
