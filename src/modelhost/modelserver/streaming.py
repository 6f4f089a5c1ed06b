"""Streamed answers: a handler that returns a generator or iterator (sync or async) of
bytes/str is answered with a chunked body, each item sent as soon as it is produced.

Which thread runs the model code matters. A sync generator runs to its end on ONE worker
thread of the :class:`~modelhost.modelserver.runner.ModelRunner`, the thread that called
the handler's kind of code anyway: model code may lean on thread-local state (torch's grad
mode, a CUDA stream) that must not change under it between two items, and the event loop
must stay free to answer ``/ping``. The thread hands each item to the loop and runs at most
``_AHEAD`` items in front of what the network has taken, so a slow client holds back the
generator instead of filling memory. An async generator is already loop code and runs on
the loop. If the client goes away the generator is closed on its own thread, so its
``finally`` blocks run where it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

from modelhost.modelserver.runner import ModelRunner, as_exception, deliver

Stream = Iterator[Any] | AsyncIterator[Any]
_AHEAD = 8
_END = object()


def is_stream(result: object) -> bool:
    """Whether a handler's result is to be streamed: an iterator, not a value that merely
    iterates (bytes, str, lists, arrays and dicts are whole answers)."""
    return isinstance(result, (Iterator, AsyncIterator)) and not isinstance(
        result, (bytes, str, bytearray, memoryview)
    )


async def parts(
    stream: Stream, runner: ModelRunner, encode: Callable[[Any], bytes]
) -> AsyncGenerator[bytes, None]:
    """The stream's items as bytes, empty ones skipped (an empty chunk would end the
    chunked body). Raises what the model code raises."""
    if isinstance(stream, AsyncIterator):
        async for item in stream:
            if data := encode(item):
                yield data
        return
    pump = _Pump(asyncio.get_running_loop(), stream, encode)
    runner.submit(pump.run)
    try:
        while (item := await pump.items.get()) is not _END:
            pump.room.release()
            if isinstance(item, BaseException):
                raise item
            if item:
                yield item
    finally:
        pump.stop()


class _Pump:
    """Runs a sync iterator on a worker thread, handing its encoded items to the loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stream: Iterator[Any], encode: Callable[[Any], bytes]
    ) -> None:
        self.loop = loop
        self.stream = stream
        self.encode = encode
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.room = threading.Semaphore(_AHEAD)
        self.stopped = False

    def run(self) -> None:
        """On the worker thread: every item, then an end marker (or the error)."""
        try:
            for item in self.stream:
                data = self.encode(item)
                self.room.acquire()
                if self.stopped:
                    return
                self._hand(data)
        except BaseException as exc:
            self._hand(as_exception(exc))
        else:
            self._hand(_END)
        finally:
            if self.stopped:
                close = getattr(self.stream, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        close()

    def stop(self) -> None:
        """On the loop: the answer is over (or abandoned); let a waiting thread go."""
        self.stopped = True
        self.room.release()

    def _hand(self, item: Any) -> None:
        deliver(self.loop, self.items.put_nowait, item)
