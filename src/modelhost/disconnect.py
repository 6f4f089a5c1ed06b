"""Stop serving a streamed answer when its client goes away.

uvicorn quietly drops what an app sends after the client disconnected, so a streaming
answer would otherwise run to its end for nobody: a generative model would keep producing
tokens for minutes. Inside :func:`cancelled_on_disconnect` a watcher waits for ASGI's
``http.disconnect`` and cancels the serving task; the cancellation closes the connection to
the instance, and the block ends quietly. Send the final, closing message after the block:
once the answer is complete, uvicorn reports a disconnect too. (The model server speaks
HTTP itself and cancels a request's task when its connection ends: see
``modelserver/protocol.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


@contextlib.asynccontextmanager
async def cancelled_on_disconnect(receive: Receive) -> AsyncIterator[None]:
    """Run the block; end it early, without an error, if the client disconnects. Call
    only after the request body has been read."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
    finally:
        watcher.cancel()
