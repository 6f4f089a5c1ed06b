"""InvokeEndpoint straight off the server's listening socket, without ASGI.

`POST /endpoints/{name}/invocations` is the hot path of every prediction. Through ASGI
each one costs the app's dispatch, `receive` and `send` message dicts, per-header checks
and two writes (status line and headers, then the body): on a 2-core machine that is a
good part of what the router hop costs next to a hand-written server. This protocol is uvicorn's
own (httptools) with one change: a request to that path, once its headers are in, is
answered by :class:`_Invocation`, which collects the body as httptools hands it over and
writes the answer in one `write`. Everything else (the control plane, S3, streaming,
async invocations, a request whose headers are over the cap, a path with escapes) goes
to the ASGI app as before.

`_Invocation` stands in for uvicorn's RequestResponseCycle where the protocol looks at
one (`response_complete`, `disconnected`, `keep_alive`, `message_event`, `run_asgi`), so
uvicorn's pipelining (answers in order, one request read ahead), graceful shutdown and
keep-alive handling apply to it unchanged. What the ASGI path did for an invocation it
still does: the declared and the received body size capped (413, the rest of a slightly
oversized body read and dropped first), `Expect: 100-continue` answered once the request
is next, a body that stops arriving answered 408 with the connection closed, HTTP/1.0 and
`Connection: close`, a client that goes away never written to, a 500 (and the connection
closed) for an error inside modelhost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from modelhost import header_limit
from modelhost.connections import IdleClosingProtocol
from modelhost.errors import RequestTimeout, SageMakerError

log = logging.getLogger(__name__)

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]

_PREFIX = b"/endpoints/"
_SUFFIX = b"/invocations"
# What uvicorn refuses in a header value (it answers 500 rather than send it).
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# How much more of a refused body is read (and dropped) before the refusal is sent: a
# connection closed while the client is still sending is reset, and a reset can discard
# the answer before the client reads it.
DRAIN_BYTES = 8 * 1024 * 1024
# Past this an answer's body is written on its own rather than copied behind its head.
_JOIN_LIMIT = 64 * 1024
_INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


class InvocationApp(Protocol):
    """What the protocol needs of the server (modelhost.server.ModelhostApp)."""

    @property
    def max_payload_bytes(self) -> int: ...

    @property
    def body_timeout_s(self) -> float: ...

    def takes_invocation(self, headers: list[tuple[bytes, bytes]], query: bytes) -> bool:
        """Whether an InvokeEndpoint request with these headers is the runtime's (not,
        say, an S3 request to a bucket named `endpoints`)."""
        ...

    async def invocation_reply(
        self,
        name: str,
        raw_path: bytes,
        query: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        started: float,
    ) -> Reply: ...

    def too_large_reply(self) -> Reply: ...

    def error_reply(self, error: SageMakerError) -> Reply: ...


class InvocationProtocol(IdleClosingProtocol):
    """uvicorn's httptools protocol answering InvokeEndpoint itself; subclassed by
    :func:`protocol_for` with the app to answer it."""

    runtime: InvocationApp

    def on_headers_complete(self) -> None:
        target = self._invocation_target()
        if target is None:
            super().on_headers_complete()
            return
        name, raw_path, query = target
        version = self.parser.get_http_version()
        keep_alive = version != "1.0" and self.parser.should_keep_alive()
        cycle = _Invocation(self, name, raw_path, query, version, keep_alive)
        existing = self.cycle
        self.cycle = cycle  # type: ignore[assignment]  # it has what uvicorn reads of one
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
        else:  # pipelined: answered after the one before it, as uvicorn does
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is _Invocation:
            cycle.feed(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is _Invocation:
            cycle.finish()
        else:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if type(cycle) is _Invocation and cycle.reading:
            cycle.wait_for_more()

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if type(cycle) is _Invocation:
            cycle.stop_waiting()

    def _invocation_target(self) -> tuple[str, bytes, bytes] | None:
        """(endpoint name, path, query) of a request this protocol answers itself."""
        if (
            self.parser.get_method() != b"POST"
            or self.limit_concurrency is not None
            or self.parser.should_upgrade()
        ):
            return None
        path, _, query = self.url.partition(b"?")
        if (
            not path.startswith(_PREFIX)
            or not path.endswith(_SUFFIX)
            or b"%" in path
            or b"#" in self.url
            or not path.isascii()
            or header_limit.too_large(self.headers)  # the ASGI app refuses it (431)
            or not self.runtime.takes_invocation(self.headers, query)
        ):
            return None
        return path[len(_PREFIX) : -len(_SUFFIX)].decode("ascii"), path, query


def protocol_for(app: InvocationApp) -> type[InvocationProtocol]:
    """The protocol class for uvicorn's `http=`, answering invocations with `app`."""
    return type("BoundInvocationProtocol", (InvocationProtocol,), {"runtime": app})


class _Invocation:
    """One InvokeEndpoint request: its body as it arrives, then its answer."""

    __slots__ = (
        "_body",
        "_complete",
        "_expect_continue",
        "_headers",
        "_http_version",
        "_name",
        "_protocol",
        "_query",
        "_raw_path",
        "_refusal",
        "_size",
        "_started",
        "_timer",
        "disconnected",
        "keep_alive",
        "message_event",
        "response_complete",
    )

    def __init__(
        self,
        protocol: InvocationProtocol,
        name: str,
        raw_path: bytes,
        query: bytes,
        http_version: str,
        keep_alive: bool,
    ) -> None:
        self._protocol = protocol
        self._http_version = http_version
        self._name = name
        self._raw_path = raw_path
        self._query = query
        self._headers = protocol.headers
        self._expect_continue = protocol.expect_100_continue
        self._body: list[bytes] = []
        self._size = 0
        self._complete = False
        # Decided before the body is whole: too large, or it stopped arriving.
        self._refusal: Reply | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._started = False  # its turn came (a pipelined request waits for the one before)
        self.keep_alive = keep_alive
        self.disconnected = False
        self.response_complete = False
        self.message_event = asyncio.Event()  # set when the task has something to do

    # --- the body, as the parser hands it over

    @property
    def reading(self) -> bool:
        return not (self._complete or self.response_complete or self.disconnected)

    def feed(self, chunk: bytes) -> None:
        if self.response_complete or self._refusal is not None:
            return
        self._size += len(chunk)
        limit = self._protocol.runtime.max_payload_bytes
        if self._size <= limit:
            self._body.append(chunk)
            return
        self._body = []
        if self._size > limit + DRAIN_BYTES:  # far over: refused without reading on
            self._refuse(self._protocol.runtime.too_large_reply())

    def finish(self) -> None:
        self._complete = True
        self._cancel_timer()
        self.message_event.set()

    def wait_for_more(self) -> None:
        """The body is not whole yet: once the request's turn has come, it has the body
        timeout from now to go on (before that, reading is paused behind the request
        ahead, as uvicorn does, and a stall is not the client's)."""
        if not self._started:
            return
        self._cancel_timer()
        self._timer = self._protocol.loop.call_later(
            self._protocol.runtime.body_timeout_s, self._timed_out
        )

    def stop_waiting(self) -> None:
        self._cancel_timer()
        self.message_event.set()

    def _timed_out(self) -> None:
        self._timer = None
        timeout_s = self._protocol.runtime.body_timeout_s
        self._refuse(
            self._protocol.runtime.error_reply(
                RequestTimeout(f"No part of the request body arrived for {timeout_s:g} seconds.")
            )
        )

    def _refuse(self, refusal: Reply) -> None:
        """Answer with `refusal` without waiting for the rest of the body."""
        self._refusal = refusal
        self._body = []
        self._cancel_timer()
        self.message_event.set()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the answer (uvicorn's name for the task's coroutine)

    async def run_asgi(self, _app: Any) -> None:
        started = time.perf_counter()
        self._started = True
        runtime = self._protocol.runtime
        headers = dict(self._headers)
        try:
            declared = headers.get(b"content-length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > runtime.max_payload_bytes
            ):
                self._reply(*runtime.too_large_reply())
                return
            if not self._complete and self._refusal is None:
                if self._expect_continue and not self._protocol.transport.is_closing():
                    self._protocol.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.wait_for_more()
                while self.reading and self._refusal is None:
                    self.message_event.clear()
                    await self.message_event.wait()
            if self.disconnected:
                return
            if self._refusal is not None:
                self._reply(*self._refusal)
            elif self._size > runtime.max_payload_bytes:
                self._reply(*runtime.too_large_reply())
            else:
                body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body = []
                self._reply(
                    *await runtime.invocation_reply(
                        self._name, self._raw_path, self._query, headers, body, started
                    )
                )
        except Exception as exc:
            log.error("invocation of endpoint %s failed", self._name, exc_info=exc)
            self._fail()

    def _reply(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """The whole answer in one write (the head written alone, then the body, is the
        pattern Nagle's algorithm and delayed ACKs stall), then what uvicorn does after
        an answer: close, or read on (the next pipelined request, or the idle timer)."""
        protocol = self._protocol
        transport = protocol.transport
        if self.disconnected or transport.is_closing():
            self.response_complete = True
            return
        parts = [STATUS_LINE[status]]
        for name, value in headers:
            if _BAD_VALUE.search(value):
                raise ValueError(f"invalid value of answer header {name!r}")
            if name == b"connection" and value == b"close":
                self.keep_alive = False
                continue
            parts += [name, b": ", value, b"\r\n"]
        parts += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if len(body) <= _JOIN_LIMIT:
            parts.append(body)
            transport.write(b"".join(parts))
        else:
            transport.write(b"".join(parts))
            transport.write(body)
        self.response_complete = True
        self._cancel_timer()
        if protocol.access_log:
            # uvicorn's access line, with the arguments its AccessFormatter expects
            path = self._raw_path + (b"?" + self._query if self._query else b"")
            protocol.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                "{}:{}".format(*protocol.client) if protocol.client else "-",
                "POST",
                path.decode("latin-1"),
                self._http_version,
                status,
            )
        if not self.keep_alive:
            transport.close()
        protocol.on_response_complete()

    def _fail(self) -> None:
        transport = self._protocol.transport
        if not self.response_complete and not self.disconnected and not transport.is_closing():
            transport.write(_INTERNAL_ERROR)
        self.response_complete = True
        self._cancel_timer()
        transport.close()
