"""Client connections that go quiet are closed: real sockets against a real server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.server import ServerProcess, running_server

# Far above the server's 1 s: a connection still open after this was never going to close.
_PATIENCE_S = 20


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("connections") / "data",
        env={"MODELHOST_IDLE_TIMEOUT": "1", "MODELHOST_BODY_TIMEOUT": "1"},
    ) as server:
        yield server


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=_PATIENCE_S)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes; socket.timeout if it never does."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_connection_that_sends_nothing_is_closed(quick_server: ServerProcess) -> None:
    with _connect(quick_server) as sock:
        assert _read_until_closed(sock) == b""


def test_request_headers_that_never_end_are_closed(quick_server: ServerProcess) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        assert _read_until_closed(sock) == b""


def test_idle_keep_alive_connection_is_closed(quick_server: ServerProcess) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        received = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200")


def test_body_that_stops_arriving_gets_408_and_close(quick_server: ServerProcess) -> None:
    with _connect(quick_server) as sock:
        sock.sendall(
            b"POST /endpoints/any/invocations HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: text/csv\r\nContent-Length: 100\r\n\r\n5.1,3.5"
        )
        received = _read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"x-amzn-errortype: RequestTimeout" in head
    assert b"connection: close" in head
    assert b'"RequestTimeout"' in body
