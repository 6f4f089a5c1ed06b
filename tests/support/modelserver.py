"""A real model server process (``python -m modelhost.modelserver serve``, what runs in
each instance) on its own, configured the way a launcher configures it: through the
SageMaker container variables. Start one, talk HTTP to it, read its log."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port, wait_for_http

START_TIMEOUT_S = 30.0


def server_env(model_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SM_"))}
    env.update(
        SM_MODEL_DIR=str(model_dir),
        SAGEMAKER_BIND_TO_PORT=str(port),
        MODELHOST_BIND_HOST="127.0.0.1",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class ModelServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        fresh: bool = False,
    ) -> Response:
        """One request; keeps a keep-alive connection unless ``fresh`` (own connection)."""
        if fresh or self._conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            if not fresh:
                self._conn = conn
        else:
            conn = self._conn
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        if fresh:
            conn.close()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def invoke(
        self, body: bytes | str, content_type: str, accept: str | None = None, **kw: object
    ) -> Response:
        headers = {"Content-Type": content_type}
        if accept is not None:
            headers["Accept"] = accept
        custom = kw.pop("custom_attributes", None)
        if custom is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = str(custom)
        return self.request("POST", "/invocations", body, headers, **kw)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def launch(model_dir: Path, log_path: Path, **env: str) -> ModelServerProcess:
    """Start ``python -m modelhost.modelserver serve`` without waiting for it."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelhost.modelserver", "serve"],
            env=server_env(model_dir, port, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ModelServerProcess(proc, port, log_path)


def wait_ready(server: ModelServerProcess, timeout: float = START_TIMEOUT_S) -> None:
    try:
        wait_for_http(
            f"http://127.0.0.1:{server.port}/ping",
            server.proc,
            timeout,
            what="model server",
            log=server.log,
        )
    except RuntimeError:
        server.stop()
        raise


def start(model_dir: Path, log_path: Path, **env: str) -> ModelServerProcess:
    server = launch(model_dir, log_path, **env)
    wait_ready(server)
    return server


def run_to_exit(
    model_dir: Path, log_path: Path, timeout: float = 30, **env: str
) -> tuple[int, str]:
    """Start a server that is expected to fail; return its exit status and output."""
    server = launch(model_dir, log_path, **env)
    try:
        rc = server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.stop()
        raise AssertionError(f"expected the server to exit:\n{server.log()}") from None
    return rc, server.log()
