"""The endpoint controller and the router in the test's own event loop, on the real state
store (SQLite in a tmp_path) and the real control-plane operations, with only the
instances fake (tests/support/fake_backend.py): what an e2e test shows through a server
process, in milliseconds instead of seconds, and with instances that hang or die on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson

from modelhost import api
from modelhost.config import Settings
from modelhost.controllers import EndpointController
from modelhost.router import Answer, Invocation, Router
from modelhost.storage import FsspecObjectStore, Ownership, SqliteStateStore
from tests.support.fake_backend import FakeBackend

#: Fast health checks: a hung instance is condemned after two missed 50 ms pings.
FAST = {
    "model_timeout_s": 2.0,
    "startup_timeout_s": 5.0,
    "health_interval_s": 0.05,
    "ping_interval_s": 0.05,
    "ping_timeout_s": 0.1,
    "ping_misses": 2,
}


class Harness:
    def __init__(self, settings: Settings, backend: FakeBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.store = SqliteStateStore(settings.state_path)
        self.objects = FsspecObjectStore(settings.objects_dir)
        self.router = Router(settings.model_timeout_s)
        self.controller = EndpointController(
            settings,
            self.store,
            self.objects,
            backend,
            self.router,
            Ownership(self.store, "in-process", settings.lease_period_s),
        )
        self.context = api.Context(settings, self.store, self.controller.notify)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """A control-plane call as a client makes it (validated against botocore's
        model); raises AssertionError with the error body on failure."""
        status, body = api.handle(self.context, f"SageMaker.{operation}", orjson.dumps(params))
        answer: dict[str, Any] = orjson.loads(body)
        assert status == 200, answer
        return answer

    def create_model(self, name: str, environment: dict[str, str] | None = None) -> None:
        self.call(
            "CreateModel",
            ModelName=name,
            PrimaryContainer={"Image": "fake", "Environment": environment or {}},
        )

    def create_config(self, name: str, variants: dict[str, tuple[str, int, float]]) -> None:
        """`variants`: name -> (model, instance count, weight)."""
        self.call(
            "CreateEndpointConfig",
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": variant,
                    "ModelName": model,
                    "InitialInstanceCount": count,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": weight,
                }
                for variant, (model, count, weight) in variants.items()
            ],
        )

    def endpoint(self, name: str) -> dict[str, Any]:
        return self.call("DescribeEndpoint", EndpointName=name)

    async def until(self, check: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
        """A bound on how long the world may take to get there, not a timing assertion."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not check():
            assert loop.time() < deadline, f"never happened: {what}"
            await asyncio.sleep(0.005)

    async def until_status(self, name: str, status: str) -> dict[str, Any]:
        await self.until(
            lambda: self.endpoint(name)["EndpointStatus"] == status, f"endpoint {name} {status}"
        )
        return self.endpoint(name)

    async def deployed(
        self, name: str, variants: dict[str, tuple[str, int, float]]
    ) -> dict[str, Any]:
        """One endpoint config named after the endpoint, the endpoint, InService."""
        self.create_config(name, variants)
        self.call("CreateEndpoint", EndpointName=name, EndpointConfigName=name)
        return await self.until_status(name, "InService")

    async def invoke(self, name: str, body: bytes = b"{}") -> Answer:
        return await self.router.invoke(
            self.router.deployments[name], Invocation(body, "application/json", None, None, None)
        )


@contextlib.asynccontextmanager
async def running_controller(
    tmp_path: Path, backend: FakeBackend | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """A running EndpointController over `backend` (a fresh FakeBackend by default), with
    FAST health checks unless `settings` says otherwise; everything stops on exit."""
    harness = Harness(
        Settings(data_dir=tmp_path / "data", **{**FAST, **settings}), backend or FakeBackend()
    )
    task = asyncio.create_task(harness.controller.run())
    try:
        yield harness
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for instance in harness.backend.instances:
            instance.release()
            instance.resume()
        await harness.controller.shutdown()
        await harness.backend.end_all()
        harness.router.close()
        harness.store.close()
