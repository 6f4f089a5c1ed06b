"""Run the model server: load the model, then listen.

Loading happens before the socket is opened, so a listening port that answers ``/ping`` with
200 means ready; the launcher needs no other signal. One process, uvloop, and the model
server's own HTTP protocol (:mod:`protocol`): uvicorn's ASGI layer cost as much CPU per
request as the rest of the model server, measured.

SIGTERM (and SIGINT) stop it gracefully, as uvicorn did: no new connections, idle ones
closed, in-flight requests get `GRACEFUL_SHUTDOWN_S` to finish; then the signal is raised
again against the handler found at start (:func:`~modelhost.modelserver.confine.
end_tree_on_sigterm`'s), so the exit status still says SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType

import uvloop

from modelhost.modelserver.app import create_app
from modelhost.modelserver.batching import batcher_for
from modelhost.modelserver.handlers import Handlers, load_handlers
from modelhost.modelserver.multimodel import ModelRegistry
from modelhost.modelserver.protocol import HttpProtocol
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.settings import Settings

log = logging.getLogger(__name__)

#: Idle keep-alive connections are kept this long, so the router's pool rarely meets a
#: connection the server is closing.
KEEP_ALIVE_S = 75
#: On SIGTERM, in-flight requests get this long to finish.
GRACEFUL_SHUTDOWN_S = 30
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_BACKLOG = 2048


def serve(settings: Settings, handlers: Handlers | None = None) -> None:
    """Load the handlers (unless given, or in multi-model mode, where models are loaded
    through ``/models`` later) and serve until SIGTERM/SIGINT.

    Raises :class:`~modelhost.modelserver.errors.StartupError` if the model cannot be loaded,
    OSError if the port cannot be listened on. uvloop sets TCP_NODELAY on accepted TCP
    sockets, so small responses are not held back by Nagle's algorithm.
    """
    if handlers is None and not settings.multi_model:
        handlers = load_handlers(settings)
    runner = ModelRunner(settings.workers)
    received: list[int] = []
    try:
        log.info(
            "starting model server on %s:%d (framework %s, %d worker thread(s))",
            settings.host,
            settings.port,
            settings.framework,
            settings.workers,
        )
        uvloop.run(_serve(settings, handlers, runner, received))
    finally:
        runner.shutdown()
    for signum in received[:1]:
        signal.raise_signal(signum)


async def _serve(
    settings: Settings, handlers: Handlers | None, runner: ModelRunner, received: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        loop.call_soon_threadsafe(stop.set)

    if handlers is None:  # multi-model: models come through /models
        app = create_app(
            None,
            runner,
            settings.workers,
            settings.token,
            registry=ModelRegistry(settings),
            inline_call_ms=settings.inline_call_ms,
        )
    else:
        batcher = batcher_for(settings, handlers, runner)
        app = create_app(
            handlers,
            runner,
            settings.workers,
            settings.token,
            batcher,
            inline_call_ms=settings.inline_call_ms,
        )
    connections: set[HttpProtocol] = set()
    try:
        server = await loop.create_server(
            lambda: HttpProtocol(app, connections, KEEP_ALIVE_S),
            settings.host,
            settings.port,
            backlog=_BACKLOG,
        )
    except OSError as exc:
        raise OSError(f"could not listen on {settings.host}:{settings.port}: {exc}") from None
    previous = {signum: signal.signal(signum, stopping) for signum in _STOP_SIGNALS}
    try:
        await stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    server.close()
    for connection in list(connections):
        connection.shut_down()
    deadline = time.monotonic() + GRACEFUL_SHUTDOWN_S
    while connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for connection in list(connections):
        connection.close()
