"""A controller's run loop ends when cancelled, even when the cancel and a wake-up land in
the same loop pass (asyncio.wait_for on 3.11 returned the wake-up and dropped the cancel,
so the loop ran on and a shutdown that awaited it never ended)."""

from __future__ import annotations

import asyncio

from modelhost.controllers.loop import ReconcileLoop


class Counting(ReconcileLoop):
    def __init__(self) -> None:
        super().__init__("counting", 60.0)
        self.passes = 0

    async def step(self) -> None:
        self.passes += 1


def test_a_cancel_that_arrives_with_a_wake_up_ends_the_loop() -> None:
    async def main() -> None:
        for _ in range(50):
            loop = Counting()
            task = asyncio.create_task(loop.run())
            while loop.passes == 0:
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # the loop is waiting for a wake-up now
            # Both in one pass: the event's waiter is woken, then the task is cancelled.
            loop._wake.set()
            task.cancel()
            async with asyncio.timeout(5):
                await asyncio.gather(task, return_exceptions=True)
            assert task.cancelled()

    asyncio.run(main())
