"""Waiting for a new instance to answer /ping: the same for every backend.

An instance is ready when its model server answers `GET /ping` with 200 (the SageMaker
container contract). Every backend polls the same way, fails at once when the instance
dies while starting (its failure detail says why), and stops what did not get ready in
time, so no caller is left holding an instance that runs unseen.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from modelhost.instances.client import InstanceClient

_PING_TIMEOUT_S = 2.0


class _Starting(Protocol):
    @property
    def address(self) -> tuple[str, int]: ...

    def is_alive(self) -> bool: ...

    def failure_detail(self) -> str: ...

    async def stop(self) -> None: ...


async def wait_until_answering(
    instance: _Starting, timeout_s: float, poll_s: float, what: str = "instance"
) -> None:
    """Poll the instance's /ping every `poll_s` until it answers 200; RuntimeError (after
    stopping it) when it dies or `timeout_s` passes first. A refused connection costs
    microseconds, so a short `poll_s` keeps a fast start from waiting on the poll."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    client = InstanceClient()
    try:
        while loop.time() < deadline:
            if not instance.is_alive():
                raise RuntimeError(instance.failure_detail())
            # Each ping is bounded too: a wedged server must not outlast the deadline.
            if await client.ping(
                instance.address, max(min(deadline - loop.time(), _PING_TIMEOUT_S), 0.01)
            ):
                return
            await asyncio.sleep(poll_s)
    finally:
        client.close()
    await instance.stop()
    raise RuntimeError(f"{what} did not answer /ping within {timeout_s:g} s")
