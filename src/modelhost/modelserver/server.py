"""Run the model server: load the model, then listen with uvicorn.

Loading happens before the socket is opened, so a listening port that answers ``/ping`` with
200 means ready; the launcher needs no other signal. One process, uvloop + httptools, no
access log and no proxy-header middleware: the fastest configuration uvicorn has, measured.
"""

from __future__ import annotations

import logging

import uvicorn

from modelhost.modelserver.app import create_app
from modelhost.modelserver.batching import batcher_for
from modelhost.modelserver.handlers import Handlers, load_handlers
from modelhost.modelserver.runner import ModelRunner
from modelhost.modelserver.settings import Settings

log = logging.getLogger(__name__)

#: Idle keep-alive connections are kept this long, so the router's pool rarely meets a
#: connection the server is closing.
KEEP_ALIVE_S = 75
#: On SIGTERM, in-flight requests get this long to finish.
GRACEFUL_SHUTDOWN_S = 30


def build_server(settings: Settings, handlers: Handlers, runner: ModelRunner) -> uvicorn.Server:
    batcher = batcher_for(settings, handlers, runner)
    app = create_app(handlers, runner, settings.workers, settings.token, batcher)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_level="warning",
        log_config=None,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, handlers: Handlers | None = None) -> None:
    """Load the handlers (unless given) and serve until SIGTERM/SIGINT.

    Raises :class:`~modelhost.modelserver.errors.StartupError` if the model cannot be loaded.
    uvloop and asyncio both set TCP_NODELAY on accepted TCP sockets, so small responses are
    not held back by Nagle's algorithm.
    """
    if handlers is None:
        handlers = load_handlers(settings)
    runner = ModelRunner(settings.workers)
    try:
        server = build_server(settings, handlers, runner)
        log.info(
            "starting model server on %s:%d (framework %s, %d worker thread(s))",
            settings.host,
            settings.port,
            settings.framework,
            settings.workers,
        )
        server.run()
        if not server.started:
            raise OSError(f"could not listen on {settings.host}:{settings.port}")
    finally:
        runner.shutdown()
