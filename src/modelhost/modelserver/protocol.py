"""HTTP/1.1 for the model server: one asyncio protocol per connection on httptools.

The model server answers three fixed paths for one client, the router. uvicorn spends about
as much CPU per request on its ASGI machinery (a scope, a task, message dicts, per-header
checks) as the model server spends on everything else; on a 2-core machine that is the
difference between the router hop costing throughput and not. So this protocol parses a
request with httptools (uvicorn's own parser), hands it to the app as a :class:`Request`,
and writes each answer in one `write`: ``/ping`` is answered inside `data_received`,
without a task; an invocation gets one task, for the model call on a worker thread.

What it keeps from uvicorn: keep-alive with an idle limit, HTTP/1.0 and
``Connection: close``, ``Expect: 100-continue``, chunked request bodies (httptools decodes
them), pipelined requests (answered in order), chunked answers for streams with write flow
control, a 400 for a request it cannot parse, a 500 for an app error, and the end of a
connection cancelling its request's task: a streamed answer stops when its client goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import httptools

log = logging.getLogger(__name__)

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 20\r\nconnection: close\r\n\r\nInvalid HTTP request"
)
_LAST_CHUNK = b"0\r\n\r\n"


@dataclass(slots=True)
class Request:
    """One parsed request. Header names are lowercased; `body` is whole."""

    method: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


def head(status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> list[bytes]:
    """The status line and headers of an answer, as parts to join."""
    parts = [b"HTTP/1.1 ", str(status).encode(), b" ", _REASONS.get(status, b""), b"\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return parts


class Responder:
    """How the app answers one request: `reply` with a whole body, or `start_stream`,
    `send_chunk`... `end_stream` for a chunked one (`abort` drops the connection instead of
    ending it, so the client sees the answer broke off)."""

    __slots__ = ("_connection", "_head_only", "keep_alive", "started")

    def __init__(self, connection: HttpProtocol, request: Request) -> None:
        self._connection = connection
        self._head_only = request.method == b"HEAD"
        self.keep_alive = request.keep_alive
        self.started = False

    def reply(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The whole answer in one write: `headers` without the Content-Length (a HEAD
        request gets the head alone)."""
        self.started = True
        length = (b"content-length", str(len(body)).encode())
        parts = head(status, [*headers, length], self.keep_alive)
        if not self._head_only:
            parts.append(body)
        self._connection.write(b"".join(parts))

    def start_stream(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self._connection.write(
            b"".join(head(status, [*headers, (b"transfer-encoding", b"chunked")], self.keep_alive))
        )

    async def send_chunk(self, data: bytes) -> None:
        """One chunk; waits while the client reads slower than the model produces."""
        if data:
            self._connection.write(b"%x\r\n%b\r\n" % (len(data), data))
            await self._connection.drained()

    def end_stream(self) -> None:
        self._connection.write(_LAST_CHUNK)

    def abort(self) -> None:
        self.keep_alive = False
        self._connection.close()


#: The app: answers a request, synchronously (None) or in a task (an awaitable).
Handler = Callable[[Request, Responder], Awaitable[None] | None]


class HttpProtocol(asyncio.Protocol):
    """One client connection. `connections` holds the open ones, for a graceful stop."""

    def __init__(
        self, handle: Handler, connections: set[HttpProtocol], keep_alive_s: float
    ) -> None:
        self._handle = handle
        self._connections = connections
        self._keep_alive_s = keep_alive_s
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._pipeline: deque[Request] = deque()
        self._writable: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._closing = False
        self._stopping = False
        # The request being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._disarm_idle()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No upgrades here: the request is answered as plain HTTP, and the parser
            # reads nothing more on this connection, so it ends after that answer.
            self.shut_down()
            return
        except httptools.HttpParserError:
            if self._task is None and not self._pipeline:
                self.write(_BAD_REQUEST)
            self.close()
            return
        if self._task is None and not self._pipeline and not self._closing:
            self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._connections.discard(self)
        self._disarm_idle()
        self._pipeline.clear()
        if self._task is not None:
            self._task.cancel()  # nobody to answer: stop a streamed answer's model
        self._wake_writer()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._wake_writer()

    # --- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = Request(
            self._parser.get_method(),
            self._url.partition(b"?")[0],
            self._headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        self._body = []
        if self._task is not None or self._pipeline:
            self._pipeline.append(request)
            if self._transport is not None:
                self._transport.pause_reading()  # one request ahead is plenty
            return
        self._run(request)

    # --- serving

    def _run(self, request: Request) -> None:
        responder = Responder(self, request)
        try:
            pending = self._handle(request, responder)
        except Exception as exc:
            self._failed(responder, exc)
            return
        if pending is None:
            self._answered(responder)
        else:
            self._task = self._loop.create_task(self._serve(pending, responder))

    async def _serve(self, pending: Awaitable[None], responder: Responder) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            return  # the connection is gone
        except Exception as exc:
            self._task = None
            self._failed(responder, exc)
            return
        self._task = None
        self._answered(responder)

    def _failed(self, responder: Responder, exc: Exception) -> None:
        log.error("request failed: %s", exc, exc_info=exc)
        if not responder.started and not self._closing:
            responder.keep_alive = False
            responder.reply(500, [(b"content-type", b"text/plain; charset=utf-8")], b"")
        self.close()

    def _answered(self, responder: Responder) -> None:
        if not responder.keep_alive or self._stopping:
            self.close()
            return
        if self._pipeline:
            if self._transport is not None and not self._closing:
                self._transport.resume_reading()
            self._run(self._pipeline.popleft())
        elif not self._closing:
            self._arm_idle()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(data)

    async def drained(self) -> None:
        if self._paused_writing and not self._closing:
            self._writable = self._loop.create_future()
            await self._writable

    def _wake_writer(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def close(self) -> None:
        """Close after what was written has gone out."""
        if not self._closing:
            self._closing = True
            self._disarm_idle()
            if self._transport is not None:
                self._transport.close()

    def shut_down(self) -> None:
        """Stopping: close now if idle, else after the answer in progress."""
        self._stopping = True
        self._pipeline.clear()
        if self._task is None:
            self.close()

    @property
    def busy(self) -> bool:
        return self._task is not None

    def _arm_idle(self) -> None:
        self._disarm_idle()
        self._idle_timer = self._loop.call_later(self._keep_alive_s, self.close)

    def _disarm_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
