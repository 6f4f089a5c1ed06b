"""Adaptive batching: concurrent requests merged into one model call.

For models whose per-call cost is mostly fixed (tree ensembles, small networks, anything on
a GPU) one call for eight requests costs little more than one for one. With
``MODELHOST_MAX_BATCH_SIZE`` above 1, ``POST /invocations`` queues its request here instead
of handing it to a worker thread directly, and :class:`Batcher` decides when the queue goes
to the model (:meth:`~modelhost.modelserver.handlers.Handlers.invoke_batch`).

The policy adapts to load instead of holding every request for the full delay, as Ray
Serve's and BentoML's batchers do:

- A request that finds the model idle (no batch in flight) goes at once, with whatever else
  is waiting: at low load every batch is a batch of one and latency does not rise.
- While a batch is in flight, requests wait for it anyway; when a worker frees up, it takes
  everything waiting, up to the size. Batches grow with the load, by themselves.
- Only when a worker is free while another batch is still in flight (several worker threads)
  is a short batch held for company, until it is full or its oldest request has waited
  ``MODELHOST_MAX_BATCH_DELAY_MS``; then it goes, full or not.

All of it runs on the event loop (no locks); only the model call is on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from modelhost.modelserver.context import Context
from modelhost.modelserver.errors import StartupError
from modelhost.modelserver.handlers import Handlers, Outcome
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.settings import BATCH_SIZE_HEADER, QUEUE_WAIT_HEADER, Settings

Headers = list[tuple[bytes, bytes]]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Waiting:
    body: bytes
    content_type: str | None
    accept: str | None
    context: Context | None
    future: asyncio.Future[tuple[Any, str, Headers]]
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Queues requests and hands them to the model in batches on `workers` threads."""

    def __init__(
        self,
        handlers: Handlers,
        runner: ModelRunner,
        workers: int,
        max_size: int,
        max_delay_s: float,
    ) -> None:
        self.handlers = handlers
        self.runner = runner
        self.workers = workers
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        self._waiting: deque[_Waiting] = deque()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None

    def submit(
        self, body: bytes, content_type: str | None, accept: str | None, context: Context | None
    ) -> asyncio.Future[tuple[Any, str, Headers]]:
        """Queue one request; the future gives ``(body or stream, content type, headers)``
        or raises what its handlers raised."""
        future: asyncio.Future[tuple[Any, str, Headers]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append(_Waiting(body, content_type, accept, context, future))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        waiting = self._waiting
        while waiting and self._in_flight < self.workers:
            if self._in_flight and len(waiting) < self.max_size:
                # A batch is running and a worker is free: hold this short batch for
                # company, but no longer than its oldest request's delay.
                deadline = waiting[0].queued + self.max_delay_s
                now = time.perf_counter()
                if now < deadline:
                    self._arm(deadline - now)
                    return
            batch: list[_Waiting] = []
            while waiting and len(batch) < self.max_size:
                item = waiting.popleft()
                if not item.future.done():  # done: the client went away while it waited
                    batch.append(item)
            if batch:
                self._start(batch)

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._dispatch()

    def _start(self, batch: list[_Waiting]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_flight += 1
        started = time.perf_counter()
        requests = [(w.body, w.content_type, w.accept, w.context) for w in batch]
        self.runner.then(
            lambda outcomes: self._finish(batch, started, outcomes), self._run, requests
        )

    def _run(
        self, requests: list[tuple[bytes, str | None, str | None, Context | None]]
    ) -> list[Outcome]:
        """On a worker thread: the batch's outcomes. A batch of one (the idle model's)
        takes the unbatched path, so that batching costs nothing at low load."""
        if len(requests) > 1:
            return self.handlers.invoke_batch(requests)
        try:
            return [self.handlers.invoke(*requests[0])]
        except Exception as exc:
            return [exc]

    def _finish(
        self, batch: list[_Waiting], started: float, outcomes: list[Outcome] | Exception
    ) -> None:
        self._in_flight -= 1
        if isinstance(outcomes, Exception):  # the batch itself failed: every request with it
            outcomes = [outcomes] * len(batch)
        size: bytes | None = str(len(batch)).encode()
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if isinstance(outcome, Exception):
                item.future.set_exception(outcome)
                continue
            wait_us = str(max(int((started - item.queued) * 1e6), 0)).encode()
            headers = [(QUEUE_WAIT_HEADER, wait_us)]
            if size is not None:  # once per batch, on its first answer
                headers.append((BATCH_SIZE_HEADER, size))
                size = None
            item.future.set_result((*outcome, headers))
        self._dispatch()


def batcher_for(settings: Settings, handlers: Handlers, runner: ModelRunner) -> Batcher | None:
    """The batcher the settings ask for, or None; :class:`StartupError` when they ask for
    batching that the handlers cannot do (better a failed endpoint that says why than a
    model that silently answers one request at a time)."""
    if settings.max_batch_size <= 1:
        return None
    if (refusal := handlers.batch_refusal) is not None:
        raise StartupError(f"batching asked for (batch size {settings.max_batch_size}): {refusal}")
    log.info(
        "batching up to %d requests, holding a batch up to %g ms",
        settings.max_batch_size,
        settings.max_batch_delay_ms,
    )
    return Batcher(
        handlers,
        runner,
        settings.workers,
        settings.max_batch_size,
        settings.max_batch_delay_ms / 1000,
    )
