"""A null HTTP server: the ceiling a load generator is measured against.

`python -m modelhost.loadgen.responder PORT` answers every request at once with 200 and
`ok`, doing as little as an HTTP/1.1 keep-alive server can, so a load test against it
measures the generator, not the server. Two paths shape the answer, for tests of the
generator itself: `/status/NNN` answers with that status, `/sleep/MS` answers after MS
milliseconds (without blocking other connections).
"""

from __future__ import annotations

import asyncio
import sys

import httptools


class _Responder(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        status, delay = 200, 0.0
        parts = self.url.split(b"/")
        if len(parts) >= 3 and parts[1] == b"status" and parts[2].isdigit():
            status = int(parts[2])
        elif len(parts) >= 3 and parts[1] == b"sleep" and parts[2].isdigit():
            delay = int(parts[2]) / 1000
        answer = (
            b"HTTP/1.1 %d X\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok" % status
        )
        if delay:
            asyncio.get_running_loop().call_later(delay, self._write, answer)
        else:
            self._write(answer)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, host: str = "127.0.0.1") -> None:
    server = await asyncio.get_running_loop().create_server(_Responder, host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
