"""The shape every controller's run loop shares: wake on a notify or an interval, make
one reconcile pass, never die of a failed pass.

The API handles requests in worker threads while the controllers live on the event loop,
so `notify` must be callable from any thread; it only sets the wake event through the loop.
A notify that arrives during a pass is not lost: the next wait returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable


class ReconcileLoop:
    """Base of a controller: subclasses implement `step` (one pass) and may override
    `prepare` (once, before the first pass)."""

    def __init__(self, what: str, interval_s: float) -> None:
        self._what = what  # names the pass in the log line when it fails
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """Wake the loop; safe from any thread (the API runs in worker threads)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def prepare(self) -> None:
        """Runs once before the first pass; notifies during it are kept."""

    async def step(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.prepare()
        while True:
            try:
                await self.step()
            except Exception:
                # logged as the controller's own module, like its other lines
                logging.getLogger(type(self).__module__).exception(
                    "%s failed; retrying", self._what
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            self._wake.clear()


async def cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until each has ended (however it ends)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
