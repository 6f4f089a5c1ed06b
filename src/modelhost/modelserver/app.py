"""The ASGI app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

A raw ASGI callable, no framework: three fixed paths need no router, and every microsecond
here is added to every request. Model code runs on worker threads (:mod:`runner`) so the event
loop keeps answering ``/ping`` while a model call takes its time; a health check must never
fail just because a prediction is slow.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from modelhost.disconnect import cancelled_on_disconnect
from modelhost.modelserver.batching import Batcher
from modelhost.modelserver.context import CUSTOM_ATTRIBUTES, Context
from modelhost.modelserver.errors import describe, status_of
from modelhost.modelserver.handlers import Handlers, encode_part
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.streaming import Stream, parts

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The toolkit's payload limit for batch transform, reported by /execution-parameters.
MAX_PAYLOAD_MB = 6

_PING_BODY = b'{"status":"Healthy"}\n'
_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_CUSTOM_ATTRIBUTES = CUSTOM_ATTRIBUTES.encode()
#: Carries the instance's token (see Settings.token); the router's client sends it first.
TOKEN_HEADER = b"x-modelhost-instance-token"


def _start(status: int, content_type: bytes, length: int) -> Message:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(length).encode())],
    }


class ModelServerApp:
    """Serves one loaded :class:`Handlers` over the SageMaker container contract."""

    def __init__(
        self,
        handlers: Handlers,
        runner: ModelRunner,
        workers: int,
        token: str | None = None,
        batcher: Batcher | None = None,
    ) -> None:
        self.handlers = handlers
        self.token = token.encode() if token else None
        self.runner = runner
        #: With batching on, requests go to the model through it (see batching).
        self.batcher = batcher
        self.execution_parameters = orjson.dumps(
            {
                "MaxConcurrentTransforms": workers,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": MAX_PAYLOAD_MB,
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await _lifespan(receive, send)
            return
        if self.token is not None and not self._authorized(scope):
            await _reply(send, 403, b"this port answers the modelhost router only", _TEXT)
            return
        path = scope["path"]
        method = scope["method"]
        if path == "/invocations":
            if method == "POST":
                await self._invocations(scope, receive, send)
            else:
                await _reply(send, 405, b"use POST /invocations", _TEXT)
        elif path == "/ping":
            if method in ("GET", "HEAD"):
                await _reply(send, 200, _PING_BODY, _JSON)
            else:
                await _reply(send, 405, b"use GET /ping", _TEXT)
        elif path == "/execution-parameters" and method == "GET":
            await _reply(send, 200, self.execution_parameters, _JSON)
        else:
            await _reply(send, 404, b"not found", _TEXT)

    def _authorized(self, scope: Scope) -> bool:
        """Before anything else: a request without the instance's token never reaches
        the model, however it is signed, whatever its path."""
        assert self.token is not None
        for name, value in scope["headers"]:
            if name == TOKEN_HEADER:
                return hmac.compare_digest(value, self.token)
        return False

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        content_type = accept = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        handlers = self.handlers
        context = Context(handlers.model_dir, scope["headers"]) if handlers.needs_context else None
        extra: list[tuple[bytes, bytes]] = []
        try:
            if self.batcher is None:
                result, result_type = await self.runner.submit(
                    handlers.invoke, body, content_type, accept, context
                )
            else:
                result, result_type, extra = await self.batcher.submit(
                    body, content_type, accept, context
                )
        except Exception as exc:
            await _reply_error(send, exc)
            return
        if not isinstance(result, bytes):
            await self._stream(receive, send, result, result_type, context, extra)
            return
        start = _start(200, result_type.encode("latin-1", "replace"), len(result))
        start["headers"].extend(extra)
        _add_custom_attributes(start, context)
        await send(start)
        await send({"type": "http.response.body", "body": result})

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        stream: Stream,
        result_type: str,
        context: Context | None,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        """A chunked answer, one chunk per part as the model yields it. The head waits for
        the first part, so a model that fails before producing anything still gets an
        error status; one that fails later can only break the connection off (before the
        final chunk), which is how the router tells a broken stream from a finished one."""
        produced = parts(stream, self.runner, lambda item: encode_part(item, result_type))
        try:
            try:
                first = await anext(produced, b"")
            except Exception as exc:
                await _reply_error(send, exc)
                return
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", result_type.encode("latin-1", "replace")), *extra],
            }
            _add_custom_attributes(start, context)
            await send(start)
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            try:
                async with cancelled_on_disconnect(receive):
                    async for data in produced:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
            except Exception as exc:
                log.error("invocation failed mid-stream: %s", describe(exc), exc_info=exc)
                raise _StreamBroken from None  # uvicorn closes the connection
        finally:
            await produced.aclose()  # ended early: stop the model's generator
        await send({"type": "http.response.body", "body": b""})


class _StreamBroken(Exception):
    """Raised out of the app to make the HTTP server drop a half-sent chunked answer."""


def _add_custom_attributes(start: Message, context: Context | None) -> None:
    if context is not None and (attributes := context.response_custom_attributes):
        start["headers"].append((_CUSTOM_ATTRIBUTES, attributes.encode("latin-1", "replace")))


async def _reply_error(send: Send, exc: Exception) -> None:
    status = status_of(exc)
    message = describe(exc)
    if status >= 500:
        log.error("invocation failed: %s", message, exc_info=exc)
    else:
        log.warning("invocation rejected (%d): %s", status, message)
    await _reply(send, status, message.encode("utf-8", "replace"), _TEXT)


async def _read_body(receive: Receive) -> bytes | None:
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(_start(status, content_type, len(body)))
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up: the model is loaded before the server starts listening."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(
    handlers: Handlers,
    runner: ModelRunner,
    workers: int,
    token: str | None = None,
    batcher: Batcher | None = None,
) -> ModelServerApp:
    return ModelServerApp(handlers, runner, workers, token, batcher)
