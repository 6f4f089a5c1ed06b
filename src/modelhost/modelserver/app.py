"""The app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

Called by :mod:`protocol` with each parsed request, no framework and no ASGI: three fixed
paths need no router, and every microsecond here is added to every request. ``/ping`` and
the other small answers are written at once; an invocation returns a coroutine, which the
protocol runs as the request's task. Model code runs on worker threads (:mod:`runner`) so
the event loop keeps answering ``/ping`` while a model call takes its time; a health check
must never fail just because a prediction is slow. A model whose calls have shown to take
under a millisecond is called on the loop instead, and answered at once (:mod:`inline`).

In multi-model mode (:mod:`multimodel`) there is no model at start: ``/models`` loads,
lists, unloads and invokes models, and ``/invocations`` is refused.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import weakref
from collections.abc import Coroutine
from typing import Any

import orjson

from modelhost.modelserver.batching import Batcher
from modelhost.modelserver.context import CUSTOM_ATTRIBUTES, Context
from modelhost.modelserver.errors import describe, status_of
from modelhost.modelserver.handlers import Handlers, encode_part
from modelhost.modelserver.inline import IDLE_WAIT_S, InlineGate
from modelhost.modelserver.multimodel import ModelRegistry, ModelsError, model_path
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
    """Serves one loaded :class:`Handlers` (or, given a registry, the models loaded in
    it) over the SageMaker container contract."""

    def __init__(
        self,
        handlers: Handlers | None,
        runner: ModelRunner,
        workers: int,
        token: str | None = None,
        batcher: Batcher | None = None,
        registry: ModelRegistry | None = None,
        inline_call_ms: float = 0.0,
        idle_wait_s: float = IDLE_WAIT_S,
    ) -> None:
        self.handlers = handlers
        self.registry = registry
        self.token = token.encode() if token else None
        self.runner = runner
        self.workers = workers
        #: With batching on, requests go to the model through it (see batching).
        self.batcher = batcher
        #: Per model: whether its calls are short enough for the loop (see inline).
        self._gates: weakref.WeakKeyDictionary[Handlers, InlineGate] = weakref.WeakKeyDictionary()
        self._inline_call_ms = inline_call_ms
        self._idle_wait_s = idle_wait_s
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
            if self.handlers is None:
                _reply(responder, 404, b"multi-model server: use /models/{name}/invoke", _TEXT)
            elif method == b"POST":
                return self._invoke(self.handlers, request, responder, self.batcher)
            else:
                _reply(responder, 405, b"use POST /invocations", _TEXT)
        elif path == b"/ping":
            if method in (b"GET", b"HEAD"):
                _reply(responder, 200, _PING_BODY, _JSON)
            else:
                _reply(responder, 405, b"use GET /ping", _TEXT)
        elif path == b"/execution-parameters" and method == b"GET":
            _reply(responder, 200, self.execution_parameters, _JSON)
        elif self.registry is not None and path.startswith(b"/models"):
            # A loaded model's prediction, the multi-model hot path: as direct as
            # /invocations (one coroutine, no lookup past the name).
            target = model_path(path) if method == b"POST" else None
            if target is not None and target[1] == "invoke":
                loaded = self.registry.models.get(target[0])
                if loaded is not None:
                    return self._invoke(loaded[1], request, responder, None)
            return self._models(self.registry, request, responder)
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

    async def _models(
        self, registry: ModelRegistry, request: Request, responder: Responder
    ) -> None:
        """The multi-model API (see :mod:`multimodel`)."""
        method = request.method
        path = request.path.split(b"?", 1)[0]
        try:
            if path == b"/models":
                if method == b"POST":
                    await registry.load(request.body)
                    _reply(responder, 200, b'{"status":"loaded"}', _JSON)
                elif method == b"GET":
                    _reply(responder, 200, registry.listing(), _JSON)
                else:
                    _reply(responder, 405, b"use GET or POST /models", _TEXT)
                return
            target = model_path(path)
            if target is None:
                _reply(responder, 404, b"not found", _TEXT)
            elif target[1] == "invoke" and method == b"POST":
                await self._invocations(registry.handlers(target[0]), request, responder, None)
            elif target[1] == "" and method == b"GET":
                _reply(responder, 200, registry.describe(target[0]), _JSON)
            elif target[1] == "" and method == b"DELETE":
                registry.unload(target[0])
                _reply(responder, 200, b'{"status":"unloaded"}', _JSON)
            else:
                _reply(responder, 405, b"method not allowed", _TEXT)
        except ModelsError as exc:
            if exc.status >= 500:
                log.error("%s", exc.message)
            _reply(responder, exc.status, exc.message.encode("utf-8", "replace"), _TEXT)

    def _gate(self, handlers: Handlers) -> InlineGate:
        gate = self._gates.get(handlers)
        if gate is None:
            gate = self._gates[handlers] = InlineGate(self._inline_call_ms)
        return gate

    def _invoke(
        self,
        handlers: Handlers,
        request: Request,
        responder: Responder,
        batcher: Batcher | None,
    ) -> Coroutine[Any, Any, None] | None:
        """An invocation: answered here, with the model called on the loop, when the
        model's calls are known to be short and no worker thread is busy (see inline);
        else a coroutine that calls it on a worker thread, or on the loop once the worker
        threads are idle."""
        if batcher is not None or not handlers.built_in:
            return self._invocations(handlers, request, responder, batcher)
        gate = self._gate(handlers)
        if not gate.allows(len(request.body)):
            return self._invocations(handlers, request, responder, batcher, gate)
        if self.runner.in_flight >= self.workers:
            return self._inline_when_idle(handlers, request, responder, gate)
        if self.runner.in_flight:  # a worker is free: no waiting, no call beside it
            return self._invocations(handlers, request, responder, batcher, gate)
        return self._inline(handlers, request, responder, gate)

    def _inline(
        self, handlers: Handlers, request: Request, responder: Responder, gate: InlineGate
    ) -> Coroutine[Any, Any, None] | None:
        """The model called here; None once answered (a stream's answer is a coroutine)."""
        content_type, accept, context = _call_args(handlers, request)
        try:
            result, result_type = gate.inline(
                len(request.body), handlers.invoke, request.body, content_type, accept, context
            )
        except Exception as exc:
            _reply_error(responder, exc)
            return None
        if not isinstance(result, bytes):
            return self._stream(responder, result, result_type, context, [])
        _answer(responder, result, result_type, context, [])
        return None

    async def _inline_when_idle(
        self, handlers: Handlers, request: Request, responder: Responder, gate: InlineGate
    ) -> None:
        """After the calls the worker threads have, in turn: on the loop if the model's
        calls are still short by then. Threads that stay busy longer than IDLE_WAIT_S (a
        slow call, or another model's steady traffic on a multi-model instance) get the
        request in their queue instead, as if it could not run inline: it is not held
        back behind work that arrives after it."""
        try:
            async with asyncio.timeout(self._idle_wait_s):
                while self.runner.in_flight:
                    await self.runner.idle()
        except TimeoutError:
            await self._invocations(handlers, request, responder, None, gate)
            return
        if not gate.allows(len(request.body)):
            await self._invocations(handlers, request, responder, None, gate)
        elif (pending := self._inline(handlers, request, responder, gate)) is not None:
            await pending

    async def _invocations(
        self,
        handlers: Handlers,
        request: Request,
        responder: Responder,
        batcher: Batcher | None,
        gate: InlineGate | None = None,
    ) -> None:
        content_type, accept, context = _call_args(handlers, request)
        extra: Headers = []
        try:
            if batcher is not None:
                result, result_type, extra = await batcher.submit(
                    request.body, content_type, accept, context
                )
            elif handlers.built_in:
                gate = gate or self._gate(handlers)
                result, result_type = await self.runner.submit(
                    gate.timed,
                    len(request.body),
                    handlers.invoke,
                    request.body,
                    content_type,
                    accept,
                    context,
                )
            else:
                result, result_type = await self.runner.submit(
                    handlers.invoke, request.body, content_type, accept, context
                )
        except Exception as exc:
            _reply_error(responder, exc)
            return
        if not isinstance(result, bytes):
            await self._stream(responder, result, result_type, context, extra)
            return
        _answer(responder, result, result_type, context, extra)

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


def _call_args(
    handlers: Handlers, request: Request
) -> tuple[str | None, str | None, Context | None]:
    """The request's Content-Type and Accept, and its Context when a handler reads one."""
    content_type = accept = None
    for name, value in request.headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"accept":
            accept = value.decode("latin-1")
    context = Context(handlers.model_dir, request.headers) if handlers.needs_context else None
    return content_type, accept, context


def _answer(
    responder: Responder, result: bytes, result_type: str, context: Context | None, extra: Headers
) -> None:
    headers = [(b"content-type", result_type.encode("latin-1", "replace")), *extra]
    _add_custom_attributes(headers, context)
    responder.reply(200, headers, result)


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
    handlers: Handlers | None,
    runner: ModelRunner,
    workers: int,
    token: str | None = None,
    batcher: Batcher | None = None,
    registry: ModelRegistry | None = None,
    inline_call_ms: float = 0.0,
) -> ModelServerApp:
    return ModelServerApp(handlers, runner, workers, token, batcher, registry, inline_call_ms)
