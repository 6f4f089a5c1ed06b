"""The model server of an endpoint, reached without the router: the baseline a benchmark
puts the routed path next to.

An instance answers only requests that carry its own token, which the server that started
it keeps to itself (it never leaves the server's process). So the benchmark starts the
baseline itself, the way the server starts its instances: modelhost's own instance backend
(forked from a fork server, confined, in a control group where the machine allows), with
the instance settings of this process's environment (which the server inherits), on the
very model folder the server unpacked for the endpoint. The backend grants the token in
this process, and `headers` sends it like the router does: the model server is reached as
the router reaches it, without a way around its check.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from modelhost.catalog import get_instance_type
from modelhost.config import Settings
from modelhost.instances import Instance, InstanceSpec, open_backend, token_header

START_TIMEOUT_S = 120.0


def endpoint_model_dir(server_data_dir: Path, endpoint: str) -> Path:
    """The folder the server unpacked the endpoint's model into (`<data-dir>/models/
    <model name>-<digest>`; the harness names the model after the endpoint)."""
    found = sorted((server_data_dir / "models").glob(f"{endpoint}-*"))
    if len(found) != 1:
        raise RuntimeError(f"expected one model folder for {endpoint}, found {found}")
    return found[0]


class DirectInstance:
    """One instance of `model_dir` on `instance_type`, started and stopped by this process.

    The backend is asynchronous; it runs on an event loop of its own in a thread, so the
    benchmark's own code stays synchronous. Use as a context manager.
    """

    def __init__(
        self,
        model_dir: Path,
        framework: str,
        work_dir: Path,
        instance_type: str = "ml.m5.large",
        environment: dict[str, str] | None = None,
    ) -> None:
        kind = get_instance_type(instance_type)
        if kind is None:
            raise ValueError(f"unknown instance type {instance_type}")
        self.work_dir = work_dir
        self.spec = InstanceSpec(
            instance_id="direct-0",
            model_dir=model_dir,
            framework=framework,
            instance_type=kind,
            environment=dict(environment or {}),
            log_path=work_dir / "logs" / "direct-0.log",
        )
        settings = Settings(data_dir=work_dir)
        self._backend = open_backend(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="direct-instance"
        )
        self.instance: Instance | None = None

    def _run(self, coroutine: Any, timeout_s: float = START_TIMEOUT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def start(self) -> DirectInstance:
        self._thread.start()
        self._run(self._backend.warm())
        self.instance = self._run(self._backend.start(self.spec))
        self._run(self.instance.wait_ready(START_TIMEOUT_S), START_TIMEOUT_S + 10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            if self.instance is not None:
                self._run(self.instance.stop(), 30)
            self._run(self._backend.close(), 30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> DirectInstance:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def _started(self) -> Instance:
        if self.instance is None:
            raise RuntimeError("the direct instance has not been started")
        return self.instance

    @property
    def port(self) -> int:
        return self._started.address[1]

    @property
    def url(self) -> str:
        host, port = self._started.address
        return f"http://{host}:{port}"

    @property
    def pid(self) -> int:
        pid = self._started.pid
        if pid is None:
            raise RuntimeError("the direct instance has no local process")
        return pid

    @property
    def headers(self) -> dict[str, str]:
        """What the router adds to each request it forwards: the instance's token."""
        header = token_header(self._started.address)
        if header is None:
            raise RuntimeError("the backend granted the direct instance no token")
        return dict([header])

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.spec.log_path.read_text(errors="replace")[-chars:]  # type: ignore[union-attr]
        except OSError:
            return ""
