"""Sends an invocation to one instance of an endpoint and brings back its answer.

One keep-alive connection pool serves every instance. A request whose connection dies
(the instance crashed, or closed an idle connection) is retried once on another healthy
instance, and the dead one is taken out of rotation for the health loop to replace.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from modelhost.errors import InvocationValidationError, ModelError, ServiceUnavailable
from modelhost.router.pool import Deployment, Replica, VariantPool

_RETRYABLE = (aiohttp.ClientConnectionError,)


@dataclass(frozen=True)
class Invocation:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    target_variant: str | None


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str
    custom_attributes: str | None
    variant: str
    model_seconds: float


def _model_error(status: int, message: str) -> ModelError:
    return ModelError(
        f'Received {"client" if status < 500 else "server"} error ({status}) from primary '
        f'with message "{message}". See the instance log for more details.',
        OriginalStatusCode=status,
        OriginalMessage=message,
    )


class Router:
    def __init__(self, model_timeout_s: float) -> None:
        self.deployments: dict[str, Deployment] = {}
        self._timeout = aiohttp.ClientTimeout(total=model_timeout_s)
        self._timeout_s = model_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, force_close=False)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _pool(self, deployment: Deployment, target: str | None) -> VariantPool:
        if target is None:
            pool = deployment.choose_variant()
        else:
            pool = deployment.variants.get(target)
            if pool is None:
                raise InvocationValidationError(
                    f"Invalid target variant {target} for endpoint {deployment.endpoint}; "
                    f"variants: {sorted(deployment.variants)}"
                )
        if pool is None or not pool.available():
            raise ServiceUnavailable(
                f"No healthy instance is available for endpoint {deployment.endpoint}; "
                "try again shortly."
            )
        return pool

    async def invoke(self, deployment: Deployment, request: Invocation) -> Answer:
        pool = self._pool(deployment, request.target_variant)
        replica = pool.pick()
        if replica is None:
            raise ServiceUnavailable(f"No healthy instance in variant {pool.name}.")
        try:
            return await self._send(replica, request)
        except _RETRYABLE:
            replica.healthy = False
            retry = pool.pick(exclude=replica)
            if retry is None and request.target_variant is None:
                other = deployment.choose_variant()
                retry = other.pick() if other else None
            if retry is None:
                raise ServiceUnavailable(
                    f"The instance serving endpoint {deployment.endpoint} failed and no other "
                    "healthy instance is available; try again shortly."
                ) from None
            try:
                return await self._send(retry, request)
            except _RETRYABLE as exc:
                retry.healthy = False
                raise ServiceUnavailable(
                    f"Endpoint {deployment.endpoint}: instances failed to answer ({exc})."
                ) from None

    async def _send(self, replica: Replica, request: Invocation) -> Answer:
        assert self._session is not None, "Router.start() was not awaited"
        headers = {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        if request.accept:
            headers["Accept"] = request.accept
        if request.custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = request.custom_attributes
        replica.acquire()
        started = time.perf_counter()
        try:
            async with self._session.post(
                replica.url, data=request.body, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.read()
        except TimeoutError:
            raise ModelError(
                f"Your invocation timed out while waiting for a response from primary of "
                f"variant {replica.variant}: the model took longer than "
                f"{self._timeout_s:g} s.",
                OriginalStatusCode=504,
                OriginalMessage="model timeout",
            ) from None
        finally:
            replica.release()
        elapsed = time.perf_counter() - started
        if response.status >= 400:
            raise _model_error(response.status, body.decode(errors="replace")[:1024])
        return Answer(
            body=body,
            content_type=response.headers.get("Content-Type", "application/octet-stream"),
            custom_attributes=response.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
            variant=replica.variant,
            model_seconds=elapsed,
        )
