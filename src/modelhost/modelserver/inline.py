"""Which model calls run on the event loop itself instead of a worker thread.

A worker thread keeps ``/ping`` answering while a model call takes seconds, but for a call
of a few hundred microseconds the handoff is most of the cost: a queue put, a thread
wake-up, the GIL passed back and forth between the loop and the worker while the loop
parses the next requests, and a wake-up of the loop to answer. Measured through the router
on a 2-core machine, those handoffs, not CPU, were what kept throughput below a
hand-written uvicorn server that calls the model on its loop (see
benchmarks/realtime_overhead.py). So a call the model has shown to be short runs inline:

- Learned per model, from the calls themselves: after ``LEARN`` consecutive short calls,
  bodies up to the largest of those run inline. A call is short when it used at most the
  budget of CPU (``MODELHOST_INLINE_CALL_MS``, 1 ms; 0 turns this off) and took at most
  ``WALL_ALLOWANCE`` times that in all: on a thread, a call's wall time includes its waits
  for the GIL while the loop parses other requests (the very cost this removes), so wall
  time alone would keep a model that is busy off the loop for good. Any longer call with
  a body that size or smaller sends the model back to threads until it has shown
  ``LEARN`` short calls again, so a model whose calls grow slower stops blocking the loop
  after one call.
- An inline call that took longer than ``NEVER_AGAIN_S`` keeps its model on threads for
  good: its calls are not what they seemed, and another such call could hold the loop (and
  the health check's ``/ping``) for as long.
- Never while a call runs on a worker thread, so a model is still never called more often
  at once than ``SAGEMAKER_MODEL_SERVER_WORKERS`` allows (one, by default). A request that
  may run inline but finds every worker busy waits on the loop until they are idle, rather
  than queueing for them, so that under steady load the threads' queue drains and every
  call ends up inline; if they are not idle within ``IDLE_WAIT_S`` (a slow call, another
  model's traffic on a multi-model instance) it joins their queue after all, so it never
  waits behind work that came after it. With a worker free it goes to that worker.
- Only for the framework's own handler chain (sklearn, ONNX, no user code): its call's
  time follows its rows, so the body's size predicts it. User code's may depend on
  anything (an LLM's max_new_tokens in a body of the same size), and one long call on the
  loop holds every ping for as long, so user code always runs on worker threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Consecutive short calls before bodies of their size run inline.
LEARN = 32
#: A short call's wall time may be this many times its CPU budget (see above).
WALL_ALLOWANCE = 10
#: An inline call this long keeps its model on worker threads from then on.
NEVER_AGAIN_S = 0.05
#: How long a request that may run inline waits for busy worker threads to be idle.
IDLE_WAIT_S = 0.01


class InlineGate:
    """One model's record of how long its calls take, and the decision it implies."""

    __slots__ = ("_budget_s", "_largest", "_limit", "_streak", "_wall_s", "off")

    def __init__(self, budget_ms: float) -> None:
        self._budget_s = budget_ms / 1000
        self._wall_s = self._budget_s * WALL_ALLOWANCE
        self._limit = -1  # bodies up to this many bytes run inline
        self._streak = 0  # consecutive short calls
        self._largest = 0  # the largest body among them
        #: True: every call goes to a worker thread, for good.
        self.off = budget_ms <= 0

    def allows(self, size: int) -> bool:
        """Whether a call with a body of `size` bytes may run on the loop."""
        return size <= self._limit

    def observe(self, size: int, wall_s: float, cpu_s: float, inline: bool) -> None:
        """Record one call (from any thread: a lost update only delays a decision)."""
        if cpu_s <= self._budget_s and wall_s <= self._wall_s:
            self._streak += 1
            if size > self._largest:
                self._largest = size
            if self._streak >= LEARN and self._largest > self._limit and not self.off:
                self._limit = self._largest
            return
        if inline and wall_s > NEVER_AGAIN_S:
            self.off = True
            log.warning(
                "a model call on the event loop took %.0f ms; this model's calls run on "
                "worker threads from now on",
                wall_s * 1000,
            )
        if size <= self._limit or self.off:
            self._limit = -1
        self._streak = 0
        self._largest = 0

    def timed(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a worker thread, its wall and CPU time observed."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.observe(size, time.perf_counter() - wall, time.thread_time() - cpu, False)

    def inline(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` here, on the loop, its wall time observed: nothing else takes
        the GIL from it, and the wall time is how long the loop was held."""
        wall = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - wall
            self.observe(size, elapsed, elapsed, True)
