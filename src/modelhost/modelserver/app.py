"""The app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

Called by :mod:`protocol` with each parsed request, no framework and no ASGI: three fixed
paths need no router, and every microsecond here is added to every request. ``/ping`` and
the other small answers are written at once; an invocation returns a coroutine, which the
protocol runs as the request's task. Model code runs on worker threads (:mod:`runner`) so
the event loop keeps answering ``/ping`` while a model call takes its time; a health check
must never fail just because a prediction is slow.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Coroutine
from typing import Any

import orjson

from modelhost.modelserver.batching import Batcher
from modelhost.modelserver.context import CUSTOM_ATTRIBUTES, Context
from modelhost.modelserver.errors import describe, status_of
from modelhost.modelserver.handlers import Handlers, encode_part
from modelhost.modelserver.protocol import Request, Responder
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.streaming import Stream, parts

log = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]

#: The toolkit's payload limit for batch transform, reported by /execution-parameters.
MAX_PAYLOAD_MB = 6

_PING_BODY = b'{"status":"Healthy"}\n'
_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_CUSTOM_ATTRIBUTES = CUSTOM_ATTRIBUTES.encode()
#: Carries the instance's token (see Settings.token); the router's client sends it first.
TOKEN_HEADER = b"x-modelhost-instance-token"


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

    def __call__(self, request: Request, responder: Responder) -> Coroutine[Any, Any, None] | None:
        if self.token is not None and not self._authorized(request.headers):
            _reply(responder, 403, b"this port answers the modelhost router only", _TEXT)
            return None
        path = request.path
        method = request.method
        if path == b"/invocations":
            if method == b"POST":
                return self._invocations(request, responder)
            _reply(responder, 405, b"use POST /invocations", _TEXT)
        elif path == b"/ping":
            if method in (b"GET", b"HEAD"):
                _reply(responder, 200, _PING_BODY, _JSON)
            else:
                _reply(responder, 405, b"use GET /ping", _TEXT)
        elif path == b"/execution-parameters" and method == b"GET":
            _reply(responder, 200, self.execution_parameters, _JSON)
        else:
            _reply(responder, 404, b"not found", _TEXT)
        return None

    def _authorized(self, headers: Headers) -> bool:
        """Before anything else: a request without the instance's token never reaches
        the model, however it is signed, whatever its path."""
        assert self.token is not None
        for name, value in headers:
            if name == TOKEN_HEADER:
                return hmac.compare_digest(value, self.token)
        return False

    async def _invocations(self, request: Request, responder: Responder) -> None:
        content_type = accept = None
        for name, value in request.headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
        handlers = self.handlers
        context = Context(handlers.model_dir, request.headers) if handlers.needs_context else None
        extra: Headers = []
        try:
            if self.batcher is None:
                result, result_type = await self.runner.submit(
                    handlers.invoke, request.body, content_type, accept, context
                )
            else:
                result, result_type, extra = await self.batcher.submit(
                    request.body, content_type, accept, context
                )
        except Exception as exc:
            _reply_error(responder, exc)
            return
        if not isinstance(result, bytes):
            await self._stream(responder, result, result_type, context, extra)
            return
        headers = [(b"content-type", result_type.encode("latin-1", "replace")), *extra]
        _add_custom_attributes(headers, context)
        responder.reply(200, headers, result)

    async def _stream(
        self,
        responder: Responder,
        stream: Stream,
        result_type: str,
        context: Context | None,
        extra: Headers,
    ) -> None:
        """A chunked answer, one chunk per part as the model yields it. The head waits for
        the first part, so a model that fails before producing anything still gets an
        error status; one that fails later can only break the connection off (before the
        final chunk), which is how the router tells a broken stream from a finished one.
        The client going away cancels this task (see :mod:`protocol`), which closes the
        model's generator."""
        produced = parts(stream, self.runner, lambda item: encode_part(item, result_type))
        try:
            try:
                first = await anext(produced, b"")
            except Exception as exc:
                _reply_error(responder, exc)
                return
            headers = [(b"content-type", result_type.encode("latin-1", "replace")), *extra]
            _add_custom_attributes(headers, context)
            responder.start_stream(200, headers)
            await responder.send_chunk(first)
            try:
                async for data in produced:
                    await responder.send_chunk(data)
            except Exception as exc:
                log.error("invocation failed mid-stream: %s", describe(exc), exc_info=exc)
                responder.abort()
                return
        finally:
            await produced.aclose()  # ended early: stop the model's generator
        responder.end_stream()


def _add_custom_attributes(headers: Headers, context: Context | None) -> None:
    if context is not None and (attributes := context.response_custom_attributes):
        headers.append((_CUSTOM_ATTRIBUTES, attributes.encode("latin-1", "replace")))


def _reply_error(responder: Responder, exc: Exception) -> None:
    status = status_of(exc)
    message = describe(exc)
    if status >= 500:
        log.error("invocation failed: %s", message, exc_info=exc)
    else:
        log.warning("invocation rejected (%d): %s", status, message)
    _reply(responder, status, message.encode("utf-8", "replace"), _TEXT)


def _reply(responder: Responder, status: int, body: bytes, content_type: bytes) -> None:
    responder.reply(status, [(b"content-type", content_type)], body)


def create_app(
    handlers: Handlers,
    runner: ModelRunner,
    workers: int,
    token: str | None = None,
    batcher: Batcher | None = None,
) -> ModelServerApp:
    return ModelServerApp(handlers, runner, workers, token, batcher)
