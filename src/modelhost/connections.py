"""Client connections that go quiet are closed.

uvicorn arms its keep-alive timer only after a response: a connection that never sends a
request, or stops halfway through its request line and headers, would stay open forever,
and enough of them exhaust the server's file descriptors. This protocol gives each request
`timeout_keep_alive` seconds from the moment the connection became idle (opened, or its
last response sent) to deliver its headers, however slowly the bytes trickle in. A body
that stops arriving is the application's to time out (`MODELHOST_BODY_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class IdleClosingProtocol(HttpToolsProtocol):
    _headers_due = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._headers_due = time.monotonic() + self.timeout_keep_alive

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # cancels the timer
        waiting_for_headers = self.cycle is None or self.cycle.response_complete
        if waiting_for_headers and not self.transport.is_closing() and not self.pipeline:
            self._arm(max(0.0, self._headers_due - time.monotonic()))

    def _idle(self) -> None:
        self._headers_due = time.monotonic() + self.timeout_keep_alive
        self._arm(self.timeout_keep_alive)

    def _arm(self, delay: float) -> None:
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(delay, self.timeout_keep_alive_handler)
