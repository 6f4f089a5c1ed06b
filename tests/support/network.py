"""This machine's own non-loopback address, for tests of instances reachable from other
hosts: bound there, an instance is reachable by anything on the network, so its token
is what keeps it to routers."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import subprocess

import pytest


def primary_address() -> str:
    """The first non-loopback IPv4 address of this machine that a socket can bind to;
    skips the test when there is none."""
    try:
        listed = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
    except OSError:
        listed = []
    for candidate in listed:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if address.version != 4 or address.is_loopback:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((candidate, 0))
            except OSError:
                continue
        return candidate
    pytest.skip("this machine has no non-loopback IPv4 address to bind instances to")


def status(host: str, port: int, method: str, path: str, headers: dict[str, str]) -> int:
    """The status of one request straight to `host:port`, past any router."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        body = b"5.1,3.5,1.4,0.2" if method == "POST" else None
        connection.request(method, path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def refused(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


#: The requests an outsider might send an instance, one per path it answers (the router's
#: response stream is a POST /invocations too, answered in chunks) and one with a guessed
#: token.
UNAUTHORIZED = (
    ("GET", "/ping", {}),
    ("HEAD", "/ping", {}),
    ("POST", "/invocations", {"Content-Type": "text/csv"}),
    ("GET", "/execution-parameters", {}),
    ("GET", "/no-such-path", {}),
    ("POST", "/invocations", {"Content-Type": "text/csv", "X-Modelhost-Instance-Token": "guess"}),
)
