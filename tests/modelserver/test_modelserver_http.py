"""The model server's own HTTP/1.1 protocol, spoken to over a raw socket: what uvicorn did
for it and what the router and other clients rely on."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tests.support.modelserver import ModelServerProcess, server_env, start

ROWS = json.dumps([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]).encode()


def _connect(server: ModelServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole Content-Length answers off one connection."""
    buffer = b""
    answers = []
    while len(answers) < count:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) >= length:
                answers.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answers: {buffer!r}"
        buffer += chunk
    return answers


def _invocation(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_pipelined_requests_are_answered_in_order(sklearn_server: ModelServerProcess) -> None:
    with _connect(sklearn_server) as sock:
        sock.sendall(
            _invocation(ROWS)
            + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
            + _invocation(json.dumps([[6.2, 2.9, 4.3, 1.3]]).encode())
        )
        first, ping, last = _read_answers(sock, 3)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"[0,1]")
    assert b'"Healthy"' in ping
    assert last.endswith(b"[1]")


def test_a_chunked_request_body_is_read_whole(sklearn_server: ModelServerProcess) -> None:
    half = len(ROWS) // 2
    chunks = b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (
        half,
        ROWS[:half],
        len(ROWS) - half,
        ROWS[half:],
    )
    with _connect(sklearn_server) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks
        )
        (answer,) = _read_answers(sock, 1)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"[0,1]")


def test_expect_100_continue_is_honoured(sklearn_server: ModelServerProcess) -> None:
    with _connect(sklearn_server) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(ROWS)
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(ROWS)
        (answer,) = _read_answers(sock, 1)
    assert answer.endswith(b"[0,1]")


def test_http_1_0_and_connection_close_end_the_connection(
    sklearn_server: ModelServerProcess,
) -> None:
    for request in (
        b"GET /ping HTTP/1.0\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ):
        with _connect(sklearn_server) as sock:
            sock.sendall(request)
            answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" in answer.lower()


def test_head_ping_has_the_length_but_no_body(sklearn_server: ModelServerProcess) -> None:
    with _connect(sklearn_server) as sock:
        sock.sendall(b"HEAD /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-length: 21" in head.lower()
    assert body == b""


def test_a_request_that_does_not_parse_gets_400_and_a_closed_connection(
    sklearn_server: ModelServerProcess,
) -> None:
    with _connect(sklearn_server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert sklearn_server.request("GET", "/ping", fresh=True).status == 200


SLOW_MODEL = """
    import time
    def model_fn(model_dir):
        return None
    def transform_fn(model, body, content_type, accept):
        time.sleep(1.0)
        return "done"
"""


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(textwrap.dedent(SLOW_MODEL))
    server = start(tmp_path, tmp_path / "log", MODELHOST_FRAMEWORK="python")
    try:
        answers: list[int] = []
        client = threading.Thread(
            target=lambda: answers.append(server.invoke(b"x", "text/plain", fresh=True).status)
        )
        client.start()
        time.sleep(0.3)  # the request is in the model now
        server.proc.send_signal(signal.SIGTERM)
        client.join(10)
        assert answers == [200]
        assert server.proc.wait(10) == -signal.SIGTERM
    finally:
        server.stop()


def test_a_port_in_use_is_a_startup_failure_naming_it(iris_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "modelhost.modelserver", "serve"],
            env=server_env(iris_dir, port, MODELHOST_FRAMEWORK="sklearn"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}" in proc.stderr.strip().splitlines()[-1]


def test_an_upgrade_request_is_answered_as_plain_http_and_the_connection_ends(
    sklearn_server: ModelServerProcess,
) -> None:
    with _connect(sklearn_server) as sock:
        sock.sendall(
            b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        )
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"Healthy"' in answer
