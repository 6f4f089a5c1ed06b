"""Keep-alive HTTP/1.1 connections to instances: the router's requests and health pings.

The router's client sits in the hot path of every prediction. aiohttp's client costs about
120 µs of CPU per request on the project's 2-core machines, as much as the model server
itself, so the router talks to instances with this small client instead: one
`asyncio.Protocol` per connection and httptools (the parser uvicorn uses) for responses.
It speaks exactly what the SageMaker container contract needs — a request with a
Content-Length body, a response read whole — and nothing else; plus, for asynchronous
inference, the same exchange streamed both ways (`InstanceClient.stream`), so payloads of
a gigabyte pass through without the server ever holding one in memory, and for response
streaming a chunked answer handed on chunk by chunk as it arrives
(`InstanceClient.stream_response`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httptools

# Close idle connections well before the model server's own keep-alive (75 s) would.
_IDLE_LIMIT_S = 30.0
_PING_TIMEOUT_S = 2.0
# A streamed response stops reading from the socket while this much waits for its sink.
_STREAM_HIGH_WATER = 4 * 1024 * 1024

#: Each instance answers only requests that carry its own token (the model server checks
#: it before anything else), so its port on 127.0.0.1 is no way around the router's
#: authentication. The backend that starts an instance grants its token here, and every
#: client of this process sends it: router, health checks, batch transform, load tests.
_TOKEN_HEADER = b"\r\nX-Modelhost-Instance-Token: "
_tokens: dict[tuple[str, int], bytes] = {}


def grant_token(address: tuple[str, int], token: str) -> None:
    _tokens[address] = _TOKEN_HEADER + token.encode()


def token_header(address: tuple[str, int]) -> tuple[str, str] | None:
    """The header an instance's requests carry, for a load generator in another process
    (given over a pipe, never on a command line)."""
    granted = _tokens.get(address)
    if granted is None:
        return None
    return ("X-Modelhost-Instance-Token", granted[len(_TOKEN_HEADER) :].decode())


def revoke_token(address: tuple[str, int], token: str) -> None:
    """Forget the token of an instance that ended, unless a newer instance on the same
    port has its own already."""
    if _tokens.get(address) == _TOKEN_HEADER + token.encode():
        del _tokens[address]


class InstanceUnreachable(ConnectionError):
    """The instance could not be reached or dropped the connection before answering;
    retrying on another instance is safe to try."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The value of header `name` (lowercase, as `headers` holds them)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.keep_alive = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        # Streaming: a 2xx body goes to `pending` for a sink instead of into `body`.
        self.sink: Callable[[bytes], Awaitable[None]] | None = None
        self.streaming = False
        # Response streaming keeps the instance's chunks apart: one part per chunk.
        self.by_chunk = False
        self.chunk: list[bytes] = []
        self.pending: deque[bytes] = deque()
        self.pending_size = 0
        self.reading_paused = False
        self.progress = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(InstanceUnreachable(f"malformed response from instance: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(InstanceUnreachable(f"instance closed the connection ({exc or 'EOF'})"))

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        # Lowercased once here rather than at every lookup of an answer's headers.
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.streaming = self.sink is not None and self.parser.get_status_code() < 300
        self.progress.set()

    def on_body(self, body: bytes) -> None:
        if not self.streaming:
            self.body.append(body)
        elif self.by_chunk:
            self.chunk.append(body)  # a chunk may come in several reads
        else:
            self._hand_on(body)

    def on_chunk_complete(self) -> None:
        if self.chunk:
            self._hand_on(b"".join(self.chunk))
            self.chunk = []

    def _hand_on(self, body: bytes) -> None:
        self.pending.append(body)
        self.pending_size += len(body)
        if self.pending_size > _STREAM_HIGH_WATER and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self.progress.set()

    def on_message_complete(self) -> None:
        self.on_chunk_complete()  # a Content-Length body is one part
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.progress.set()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()
        self.progress.set()
        self.writable.set()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, timeout_s: float) -> Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.headers = []
        self.body = []
        waiter = self.waiter = loop.create_future()
        self.transport.write(request)
        # call_at is far cheaper than asyncio.timeout() on this path.
        timer = loop.call_at(loop.time() + timeout_s, self._time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
        return Response(self.parser.get_status_code(), self.headers, b"".join(self.body))

    async def stream_exchange(
        self,
        head: bytes,
        body: AsyncIterable[bytes],
        sink: Callable[[bytes], Awaitable[None]],
        on_head: Callable[[Response], Awaitable[None]] | None = None,
        idle_timeout_s: float | None = None,
        by_chunk: bool = False,
    ) -> Response:
        """Send `head`, then `body` chunk by chunk as the socket takes it; a 2xx response
        body goes to `sink` as it arrives (reading pauses while the sink lags), any other
        response is read whole. `on_head` hears a 2xx answer's status and headers before
        its first chunk. With `by_chunk` the sink gets each chunk of a chunked answer on
        its own, else whatever has arrived. The caller bounds the total time;
        `idle_timeout_s` bounds each wait for the answer's next bytes (TimeoutError)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self.headers = []
        self.body = []
        self.sink = sink
        self.by_chunk = by_chunk
        waiter = self.waiter = loop.create_future()
        try:
            # The head goes out with the first chunk: a head sent alone, then the body,
            # is the write-write-read pattern that Nagle's algorithm and delayed ACKs
            # turn into a 40 ms stall per request.
            pending = head
            async for chunk in body:
                if waiter.done() or self.closed:
                    break  # answered (or gone) before taking the whole body
                self.transport.write(pending + chunk if pending else chunk)
                pending = b""
                await self.writable.wait()
            if pending:
                self.transport.write(pending)
            while True:
                if on_head is not None and self.streaming:
                    await on_head(Response(self.parser.get_status_code(), self.headers, b""))
                    on_head = None
                if self.pending:
                    if by_chunk:
                        data = self.pending.popleft()
                        self.pending_size -= len(data)
                    else:
                        data = b"".join(self.pending)
                        self.pending.clear()
                        self.pending_size = 0
                    if self.reading_paused and not self.closed:
                        self.transport.resume_reading()
                        self.reading_paused = False
                    await sink(data)
                    continue
                if waiter.done():
                    waiter.result()  # raises InstanceUnreachable if the connection broke
                    break
                self.progress.clear()
                if not self.pending and not waiter.done():
                    if idle_timeout_s is None:
                        await self.progress.wait()
                    else:
                        async with asyncio.timeout(idle_timeout_s):
                            await self.progress.wait()
        except BaseException:
            waiter.cancel()
            self.close()  # half a streamed exchange leaves the connection unusable
            raise
        finally:
            self.sink = None
            self.streaming = False
            self.by_chunk = False
            self.chunk = []
        return Response(self.parser.get_status_code(), self.headers, b"".join(self.body))

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
        self.waiter = None
        self.close()  # a late answer must not be read as the next request's


class InstanceClient:
    """A pool of idle keep-alive connections per instance address."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def request(
        self,
        address: tuple[str, int],
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
    ) -> Response:
        """Send one request. TimeoutError when the instance takes longer than timeout_s;
        InstanceUnreachable when it cannot be reached or drops the connection."""
        message = _head(address, method, path, headers, len(body)) + body

        connection = self._take_idle(address)
        if connection is not None:
            try:
                response = await connection.exchange(message, timeout_s)
                return self._keep(address, connection, response)
            except InstanceUnreachable:
                # The instance may have closed this idle connection just as we reused it;
                # one fresh connection tells a stale socket from a dead instance.
                pass
        connection = await self._connect(address)
        return self._keep(address, connection, await connection.exchange(message, timeout_s))

    async def stream(
        self,
        address: tuple[str, int],
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterable[bytes],
        length: int,
        sink: Callable[[bytes], Awaitable[None]],
        timeout_s: float,
    ) -> Response:
        """POST `length` bytes read from `body`, with a 2xx response body handed to `sink`
        chunk by chunk (the returned Response then has an empty body). TimeoutError past
        timeout_s; InstanceUnreachable as for `request`. A stream once begun cannot be
        replayed, so there is no second try on a fresh connection: pooled connections are
        closed here (30 s) well before instances close them (75 s), so a failure means
        the instance went away and the caller retries the whole request."""
        connection = self._take_idle(address) or await self._connect(address)
        async with asyncio.timeout(timeout_s):
            response = await connection.stream_exchange(
                _head(address, b"POST", path, headers, length), body, sink
            )
        return self._keep(address, connection, response)

    async def stream_response(
        self,
        address: tuple[str, int],
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        on_head: Callable[[Response], Awaitable[None]],
        sink: Callable[[bytes], Awaitable[None]],
        timeout_s: float,
    ) -> Response:
        """POST `body`; a 2xx answer is announced to `on_head`, then its body goes to
        `sink` chunk by chunk as the instance sends it (the returned Response has an empty
        body); any other answer is read whole. `timeout_s` bounds the wait for the first
        bytes and each gap between chunks, not the whole answer: a model may stream for
        longer than any single wait. TimeoutError and InstanceUnreachable as for `stream`,
        and with no second try for the same reason."""
        connection = self._take_idle(address) or await self._connect(address)
        head = _head(address, b"POST", path, headers, len(body))
        response = await connection.stream_exchange(
            head, _once(body), sink, on_head=on_head, idle_timeout_s=timeout_s, by_chunk=True
        )
        return self._keep(address, connection, response)

    async def ping(self, address: tuple[str, int], timeout_s: float = _PING_TIMEOUT_S) -> bool:
        """Whether the instance answers GET /ping with 200 (the container contract's
        health check) within `timeout_s`, connecting included: a stopped process's full
        accept queue would hold a connect for a minute."""
        try:
            async with asyncio.timeout(timeout_s):
                response = await self.request(address, b"GET", b"/ping", [], b"", timeout_s)
        except (InstanceUnreachable, TimeoutError):
            return False
        return response.status == 200

    def _take_idle(self, address: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < _IDLE_LIMIT_S:
                return connection
            connection.close()
        return None

    async def _connect(self, address: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(_Connection, *address)
        except OSError as exc:
            raise InstanceUnreachable(f"cannot connect to instance at {address}: {exc}") from exc
        return connection

    def _keep(
        self, address: tuple[str, int], connection: _Connection, response: Response
    ) -> Response:
        if connection.keep_alive and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(address, []).append(connection)
        else:
            connection.close()
        return response

    def forget(self, address: tuple[str, int]) -> None:
        """Close the idle connections of an instance that is going away."""
        for connection in self._idle.pop(address, []):
            connection.close()

    def close(self) -> None:
        for address in list(self._idle):
            self.forget(address)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _head(
    address: tuple[str, int],
    method: bytes,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    length: int,
) -> bytes:
    head = [method, b" ", path, b" HTTP/1.1\r\nHost: ", f"{address[0]}:{address[1]}".encode()]
    if (token := _tokens.get(address)) is not None:
        head.append(token)
    for name, value in headers:
        head += [b"\r\n", name, b": ", value]
    head += [b"\r\nContent-Length: ", str(length).encode(), b"\r\n\r\n"]
    return b"".join(head)
