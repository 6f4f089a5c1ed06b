"""A real OCI registry on this machine for image-pull tests: Debian's `docker-registry`
(the CNCF distribution registry, installed by scripts/test) serving a folder over plain
HTTP on a port of the test's own, behind a gate that can hold a pull in the middle.

No public registry is reachable from CI; this one is, and the engine pulls from it as it
would from any other (podman is told it is plain HTTP through a registries.conf of the
test's own). The gate passes the first `GATE_AFTER_BYTES` of what the registry sends and
then holds the rest until the test opens it, so a test sees a pull in progress without
depending on how fast the machine is.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelhost.instances.local import free_port

GATE_AFTER_BYTES = 512 * 1024


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT", the gate's address: what image names start with
    opened: threading.Event = field(default_factory=threading.Event)
    sent: list[int] = field(default_factory=lambda: [0])

    def hold(self) -> None:
        self.sent[0] = 0
        self.opened.clear()

    def open(self) -> None:
        self.opened.set()


def _pipe(source: socket.socket, sink: socket.socket, registry: Registry | None) -> None:
    try:
        while chunk := source.recv(65536):
            if registry is not None:
                registry.sent[0] += len(chunk)
                if registry.sent[0] > GATE_AFTER_BYTES:
                    registry.opened.wait()
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _gate(listener: socket.socket, upstream: int, registry: Registry) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", upstream))
        threading.Thread(target=_pipe, args=(client, server, None), daemon=True).start()
        threading.Thread(target=_pipe, args=(server, client, registry), daemon=True).start()


@contextlib.contextmanager
def local_registry(folder: Path) -> Iterator[Registry]:
    """A registry storing under `folder`, reached through the gate (open at first)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip(
            "docker-registry is not installed (scripts/test: apt-get install docker-registry)"
        )
    port = free_port()
    config = folder / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'blobs'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    listener = socket.create_server(("127.0.0.1", 0))
    registry = Registry(f"127.0.0.1:{listener.getsockname()[1]}")
    registry.open()
    threading.Thread(target=_gate, args=(listener, port, registry), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("docker-registry did not start listening")
            time.sleep(0.05)
        yield registry
    finally:
        registry.open()
        listener.close()
        process.terminate()
        process.wait(10)


def registries_conf(folder: Path, registry: Registry) -> Path:
    """A containers-registries.conf telling podman the registry speaks plain HTTP."""
    path = folder / "registries.conf"
    path.write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    return path
