"""InvokeEndpoint on the server's own protocol (modelhost.runtime.protocol): raw HTTP/1.1
over real sockets against a real server and endpoint, for what a client library never
shows: pipelining, requests split across packets, chunked bodies, 100-continue, keep-alive
after a refusal, HTTP/1.0."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from tests.support.endpoints import deploy
from tests.support.models import iris_rows, put_model
from tests.support.server import ServerProcess, running_server

_TIMEOUT_S = 30
_SIX_MB = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def endpoint(sagemaker, iris_model_url: str) -> str:
    return deploy(sagemaker, iris_model_url)


@pytest.fixture(scope="module")
def expected(runtime, endpoint: str) -> dict[str, bytes]:
    """The endpoint's answers to two bodies, as boto3 gets them."""
    bodies = {"three": json.dumps(iris_rows(3)).encode(), "one": json.dumps(iris_rows(1)).encode()}
    return {
        key: runtime.invoke_endpoint(
            EndpointName=endpoint, ContentType="application/json", Body=body
        )["Body"].read()
        for key, body in bodies.items()
    } | {f"{key}-body": body for key, body in bodies.items()}


@pytest.fixture
def connection(server: ServerProcess) -> Iterator[tuple[socket.socket, BinaryIO]]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each send its own packet
    with sock, sock.makefile("rb") as reader:
        yield sock, reader


def _invocation(endpoint: str, body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST /endpoints/" + endpoint.encode() + b"/invocations HTTP/" + version + b"\r\n"
        b"Host: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _answer(reader: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One answer off the connection: status, headers (lowercased names), body."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def test_pipelined_requests_are_answered_in_order(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    sock, reader = connection
    sock.sendall(
        _invocation(endpoint, expected["three-body"])
        + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"  # the ASGI app's, between two of ours
        + _invocation("no-such-endpoint", b"[]")
        + _invocation(endpoint, expected["one-body"])
    )
    first, ping, missing, last = (_answer(reader) for _ in range(4))
    assert first[0] == 200 and first[2] == expected["three"]
    assert first[1]["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert ping[0] == 200
    assert missing[0] == 400
    assert missing[1]["x-amzn-errortype"] == "ValidationError"
    assert "no-such-endpoint" in json.loads(missing[2])["message"]
    assert last[0] == 200 and last[2] == expected["one"]


def test_request_split_across_packets(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    sock, reader = connection
    request = _invocation(endpoint, expected["three-body"])
    head_end = request.index(b"\r\n\r\n") + 4
    cuts = [0, 7, 20, head_end - 10, head_end, head_end + 3, len(request)]
    for start, end in itertools.pairwise(cuts):
        sock.sendall(request[start:end])
        time.sleep(0.05)
    status, _, body = _answer(reader)
    assert (status, body) == (200, expected["three"])


def test_chunked_body(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    sock, reader = connection
    body = expected["three-body"]
    sock.sendall(
        b"POST /endpoints/" + endpoint.encode() + b"/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%b\r\n"
        % (10, body[:10])
    )
    time.sleep(0.05)
    sock.sendall(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body) - 10, body[10:]))
    status, _, answer = _answer(reader)
    assert (status, answer) == (200, expected["three"])


def test_expect_100_continue(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    sock, reader = connection
    request = _invocation(endpoint, expected["one-body"], b"Expect: 100-continue\r\n")
    head_end = request.index(b"\r\n\r\n") + 4
    sock.sendall(request[:head_end])
    assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert reader.readline() == b"\r\n"
    sock.sendall(request[head_end:])
    status, _, body = _answer(reader)
    assert (status, body) == (200, expected["one"])


def test_oversize_body_is_refused_and_the_connection_serves_on(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    """No Content-Length to refuse it by: the body is counted as it arrives, read to its
    end and dropped, and the refusal is SageMaker's; the connection stays usable."""
    sock, reader = connection
    sock.sendall(
        b"POST /endpoints/" + endpoint.encode() + b"/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)
    for _ in range(_SIX_MB // len(chunk) + 1):
        sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    sock.sendall(b"0\r\n\r\n")
    status, headers, body = _answer(reader)
    assert status == 413
    assert headers["x-amzn-errortype"] == "ValidationError"
    assert "6 MB" in json.loads(body)["message"]
    assert headers.get("connection") != "close"
    sock.sendall(_invocation(endpoint, expected["one-body"]))
    status, _, answer = _answer(reader)
    assert (status, answer) == (200, expected["one"])


def test_far_oversize_body_is_refused_before_it_ends(
    connection: tuple[socket.socket, BinaryIO], endpoint: str
) -> None:
    """Past the limit plus what is drained (8 MB), the refusal comes while the body is
    still arriving: a client streaming gigabytes is not read to its end first."""
    sock, reader = connection
    sock.sendall(
        b"POST /endpoints/" + endpoint.encode() + b"/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)
    for _ in range(_SIX_MB // len(chunk) + 9):  # 15 MB, and the body never ends
        sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    status, headers, body = _answer(reader)
    assert status == 413
    assert headers["x-amzn-errortype"] == "ValidationError"
    assert "6 MB" in json.loads(body)["message"]


def test_declared_oversize_body_is_refused_before_it_is_sent(
    connection: tuple[socket.socket, BinaryIO], endpoint: str
) -> None:
    sock, reader = connection
    sock.sendall(
        b"POST /endpoints/" + endpoint.encode() + b"/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Expect: 100-continue\r\nContent-Length: " + str(_SIX_MB + 1).encode() + b"\r\n\r\n"
    )
    status, _, body = _answer(reader)  # no 100 Continue first: nothing to send
    assert status == 413
    assert "6 MB" in json.loads(body)["message"]


def test_http_1_0_is_answered_and_closed(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    sock, reader = connection
    sock.sendall(_invocation(endpoint, expected["one-body"], version=b"1.0"))
    status, headers, body = _answer(reader)
    assert (status, body) == (200, expected["one"])
    assert headers["connection"] == "close"
    assert reader.read() == b""  # closed by the server


def test_connection_close_is_honoured(
    connection: tuple[socket.socket, BinaryIO], endpoint: str, expected: dict[str, bytes]
) -> None:
    sock, reader = connection
    sock.sendall(_invocation(endpoint, expected["one-body"], b"Connection: close\r\n"))
    status, headers, body = _answer(reader)
    assert (status, body) == (200, expected["one"])
    assert headers["connection"] == "close"
    assert reader.read() == b""


def test_client_gone_mid_body_does_not_hold_up_others(
    server: ServerProcess, endpoint: str, expected: dict[str, bytes]
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=_TIMEOUT_S) as gone:
        gone.sendall(_invocation(endpoint, expected["three-body"])[:-5])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=_TIMEOUT_S)
    with sock, sock.makefile("rb") as reader:
        for _ in range(3):  # keep-alive: one connection, several answers
            sock.sendall(_invocation(endpoint, expected["three-body"]))
            status, _, body = _answer(reader)
            assert (status, body) == (200, expected["three"])


def test_s3_signed_request_to_the_path_is_s3s(
    connection: tuple[socket.socket, BinaryIO],
) -> None:
    """A request signed for S3 is the S3 API's (a bucket named `endpoints`) even on the
    invocations path: the protocol leaves it to the app, which routes it to S3."""
    sock, reader = connection
    sock.sendall(
        b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b"Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request,"
        b" SignedHeaders=host, Signature=0\r\n\r\n"
    )
    _, headers, body = _answer(reader)
    assert "x-amzn-errortype" not in headers
    assert headers["content-type"].startswith("text/xml")
    assert b"<Error>" in body


_SLEEPING_CODE = b"""
import json, time
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    time.sleep(json.loads(body)["sleep"])
    return body, "application/json"
"""


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server with a 1 s body timeout, and an endpoint whose model sleeps as asked."""
    with running_server(
        tmp_path_factory.mktemp("impatient") / "data", env={"MODELHOST_BODY_TIMEOUT": "1"}
    ) as server:
        url = put_model(server.data_dir, "sleeping", {"code/inference.py": _SLEEPING_CODE})
        yield server, deploy(server.client("sagemaker"), url, image="modelhost/python")


def test_pipelined_body_is_not_timed_out_while_it_waits_its_turn(
    impatient: tuple[ServerProcess, str],
) -> None:
    """A pipelined request is not read while the one ahead runs (one request read
    ahead), so its body timeout starts with its turn, not while it waits."""
    server, endpoint = impatient
    slow = _invocation(endpoint, b'{"sleep": 2.5}')
    waiting = _invocation(endpoint, b'{"sleep": 0}')
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock, sock.makefile("rb") as reader:
        sock.sendall(slow + waiting[:-4])  # the second one's body unfinished
        time.sleep(0.3)
        sock.sendall(waiting[-4:])
        first, second = _answer(reader), _answer(reader)
    assert first[0] == 200 and json.loads(first[2]) == {"sleep": 2.5}
    assert second[0] == 200 and json.loads(second[2]) == {"sleep": 0}
