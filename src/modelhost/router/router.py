"""Sends an invocation to one instance of an endpoint and brings back its answer.

One keep-alive connection pool serves every instance. A request whose instance cannot be
reached (it crashed, is restarting, or hung and was killed by its health check) is retried
once on another healthy instance, and the failed one is taken out of rotation until the
health loop has replaced it or seen it answer /ping again. A request that finds no ready
instance (the server just restarted, or the only instance is being replaced) waits for
one, at most the model timeout, as a serverless cold start does, and only then gets a
retriable 503: an endpoint that exists never answers 400 for being busy starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from modelhost.errors import InvocationValidationError, ModelError, ServiceUnavailable
from modelhost.instances import InstanceClient, InstanceUnreachable, Response
from modelhost.modelserver import BATCH_SIZE_HEADER, QUEUE_WAIT_HEADER
from modelhost.router import pipeline
from modelhost.router.components import (
    ComponentRoute,
    components_only,
    no_copies,
    scaled_elsewhere,
    unknown_component,
)
from modelhost.router.multimodel import ModelRouting, missing_target_model, not_multi_model
from modelhost.router.pool import Deployment, Replica, VariantPool
from modelhost.router.serverless import PoolRetired, ServerlessPool

_RETRYABLE = (InstanceUnreachable,)
# A waiting request looks again this often even if nothing wakes it.
_RECHECK_S = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Invocation:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    target_variant: str | None
    # TargetModel: a key under a multi-model endpoint's prefix.
    target_model: str | None = None
    #: TargetContainerHostname: the container of a Direct multi-container endpoint.
    target_container: str | None = None


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str
    custom_attributes: str | None
    variant: str
    model_seconds: float
    #: (batch size, queue wait in seconds) when the model server batched the request; the
    #: size only on the first answer of each batch (0 on the others).
    batch: tuple[int, float] | None = None


class StreamInterrupted(Exception):
    """A streamed answer broke off after its first part reached the client: too late for
    an HTTP error, so it ends the event stream as a `ModelStreamError` (ErrorCode
    `StreamBroken` or `ModelInvocationTimeExceeded`) or `InternalStreamFailure` event."""

    def __init__(self, exception_type: str, error_code: str | None, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.error_code = error_code
        self.message = message


def _model_error(status: int, message: str) -> ModelError:
    return ModelError(
        f"Received {'client' if status < 500 else 'server'} error ({status}) from primary "
        f'with message "{message}". See the instance log for more details.',
        OriginalStatusCode=status,
        OriginalMessage=message,
    )


class Router:
    def __init__(self, model_timeout_s: float) -> None:
        self.deployments: dict[str, Deployment] = {}
        # Deployments other servers sharing the state store run, kept up to date by
        # modelhost.controllers.InstanceRegistry; a deployment here wins over one there.
        self.shared: dict[str, Deployment] = {}
        self._timeout_s = model_timeout_s
        self._client = InstanceClient()
        self._changed = asyncio.Event()
        self.models = ModelRouting(self._client, model_timeout_s)
        # Inference components by name, kept by the endpoint controller.
        self.components: dict[str, ComponentRoute] = {}
        # Components whose copies other servers run (the instance registry keeps them, with
        # `shared`); one here wins over one there.
        self.shared_components: dict[str, ComponentRoute] = {}

    def component(self, name: str) -> ComponentRoute | None:
        """The route of inference component `name`: this server's, else another's."""
        return self.components.get(name) or self.shared_components.get(name)

    def close(self) -> None:
        self._client.close()

    def forget(self, replica: Replica) -> None:
        """Drop the pooled connections of a replica that is being stopped (each
        container's, for a multi-container one)."""
        self._client.forget(replica.address)
        for _, address in replica.pipeline.hops[1:] if replica.pipeline else ():
            self._client.forget(address)

    async def ping(self, replica: Replica, timeout_s: float) -> bool:
        if replica.pipeline is not None:  # healthy when every container answers
            return all(
                await asyncio.gather(
                    *(self._client.ping(address, timeout_s) for _, address in replica.pipeline.hops)
                )
            )
        return await self._client.ping(replica.address, timeout_s)

    def changed(self) -> None:
        """Capacity may have come: a deployment was published or ended, an instance was
        added or answers again. Wakes every request waiting in `wait_for`."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for(self, find: Callable[[], T | None], what: str) -> T:
        """What `find` finds, waiting (at most the model timeout) while it finds nothing;
        `find` may raise to end the wait. ServiceUnavailable naming `what` past that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        while (found := find()) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ServiceUnavailable(f"{what} within {self._timeout_s:g} s; try again shortly.")
            event = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _RECHECK_S)):
                    await event.wait()
        return found

    def _pool(self, deployment: Deployment, target: str | None) -> VariantPool | None:
        """The pool a request goes to; None while no pool can serve."""
        if target is None:
            pool = deployment.choose_variant()
        else:
            pool = deployment.variants.get(target)
            if pool is None:
                raise InvocationValidationError(
                    f"Invalid target variant {target} for endpoint {deployment.endpoint}; "
                    f"variants: {sorted(deployment.variants)}"
                )
        if pool is None or not pool.can_serve():
            return None
        return pool

    async def _ready(
        self, deployment: Deployment, target: str | None
    ) -> tuple[Deployment, VariantPool, Replica | None]:
        """Wait for a pool with a ready instance (None for a serverless pool, which finds
        its own), in the endpoint's deployment as it is when one comes: an update may
        swap it meanwhile."""
        name = deployment.endpoint

        def find() -> tuple[Deployment, VariantPool, Replica | None] | None:
            current = self.deployments.get(name) or self.shared.get(name)
            if current is None:
                raise ServiceUnavailable(
                    f"Endpoint {name} is being deleted or restarted; try again shortly."
                )
            pool = self._pool(current, target)
            if pool is None:
                if _components_only(current, target):
                    raise components_only(name)
                if _scaled_to_zero(current, target):
                    raise ServiceUnavailable(
                        f"Endpoint {name} has no instances: its autoscaling scaled it to "
                        "zero. Raise the scalable target's MinCapacity, or retry once it "
                        "has scaled out."
                    )
                return None
            if isinstance(pool, ServerlessPool):
                return current, pool, None
            replica = pool.pick()
            return None if replica is None else (current, pool, replica)

        return await self.wait_for(find, f"No instance of endpoint {name} became ready")

    def _pool_now(self, deployment: Deployment, target: str | None) -> VariantPool:
        """For a caller that must not wait (an asynchronous request holds a lease): the
        pool, or ServiceUnavailable at once."""
        pool = self._pool(deployment, target)
        if pool is None:
            raise ServiceUnavailable(
                f"No healthy instance is available for endpoint {deployment.endpoint}; "
                "try again shortly."
            )
        return pool

    async def invoke(self, deployment: Deployment, request: Invocation) -> Answer:
        if request.target_model is not None:
            return await self._invoke_model(deployment, request, request.target_model)
        target = request.target_variant
        deployment = deployment.route(target)
        pool = self._pool(deployment, target)
        replica = None
        if pool is not None and not isinstance(pool, ServerlessPool):
            replica = pool.pick()
        if replica is None and not isinstance(pool, ServerlessPool):
            deployment, pool, replica = await self._ready(deployment, target)
        if replica is None:
            assert isinstance(pool, ServerlessPool)
            return await self._serverless(deployment, pool, request)
        if pool is not None and pool.models is not None:
            raise missing_target_model(deployment.endpoint)
        try:
            return await self._send(replica, request)
        except _RETRYABLE:
            replica.healthy = False
        # It never answered: safe to send once more, to another instance.
        retry = pool.pick(exclude=replica) if pool is not None else None
        if retry is None and target is None:
            other = deployment.choose_variant()
            if other is not None and not isinstance(other, ServerlessPool):
                retry = other.pick()
        if retry is None:
            deployment, pool, retry = await self._ready(deployment, target)
            if retry is None:
                assert isinstance(pool, ServerlessPool)
                return await self._serverless(deployment, pool, request)
        try:
            return await self._send(retry, request)
        except _RETRYABLE as exc:
            retry.healthy = False
            raise ServiceUnavailable(
                f"Endpoint {deployment.endpoint}: instances failed to answer ({exc})."
            ) from None

    async def invoke_component(self, endpoint: str, name: str, request: Invocation) -> Answer:
        """InvokeEndpoint with InferenceComponentName: one of the component's copies,
        waited for while none is ready (see :mod:`.components`); retried once on another
        copy when the first could not be reached."""
        route = self._component(endpoint, name, request)
        replica = route.pool.pick()
        if replica is None:
            replica = await self._copy(route)
        try:
            return await self._send(replica, request)
        except _RETRYABLE:
            replica.healthy = False
        retry = route.pool.pick(exclude=replica) or await self._copy(route)
        try:
            return await self._send(retry, request)
        except _RETRYABLE as exc:
            retry.healthy = False
            raise ServiceUnavailable(
                f"Inference component {name}: its copies failed to answer ({exc})."
            ) from None

    def _component(self, endpoint: str, name: str, request: Invocation) -> ComponentRoute:
        """The route of a request for an inference component, the request counted."""
        route = self.component(name)
        if route is None or route.endpoint != endpoint:
            raise unknown_component(name, endpoint)
        if request.target_model is not None:
            raise InvocationValidationError(
                "TargetModel cannot be combined with InferenceComponentName: an inference "
                "component hosts one model."
            )
        if request.target_variant is not None and request.target_variant != route.variant:
            raise InvocationValidationError(
                f"Inference component {name} is on variant {route.variant}, not "
                f"{request.target_variant}."
            )
        route.invocations += 1
        return route

    async def _copy(self, route: ComponentRoute) -> Replica:
        """A ready copy of the component, waited for; scaling out from zero is asked for
        when nothing is coming otherwise."""

        def find() -> Replica | None:
            current = self.component(route.name)
            if current is None:
                raise ServiceUnavailable(
                    f"Inference component {route.name} is being deleted; try again shortly."
                )
            if current.desired == 0:
                if not current.scalable_from_zero:
                    raise no_copies(current)
                if current.owner is not None:
                    raise scaled_elsewhere(current, current.owner)
                current.demand()
            return current.pool.pick()

        return await self.wait_for(
            find, f"No copy of inference component {route.name} became ready"
        )

    async def mirror(self, pool: VariantPool, request: Invocation) -> Answer:
        """A copy of a request for a shadow variant: no retry and no wait, since nobody
        waits for its answer."""
        return await self._send(_pick(pool), request)

    async def _invoke_model(
        self, deployment: Deployment, request: Invocation, target_model: str
    ) -> Answer:
        """A multi-model endpoint's request for one of its models (see multimodel)."""
        if request.target_container is not None:
            raise InvocationValidationError(
                f"TargetContainerHostname {request.target_container} was given, but endpoint "
                f"{deployment.endpoint} is not configured for direct invocation: only a model "
                "with InferenceExecutionConfig.Mode Direct takes it."
            )
        pool = self._pool(deployment, request.target_variant)
        if pool is None or pool.models is None:
            if pool is not None or not any(p.models for p in deployment.variants.values()):
                raise not_multi_model(deployment.endpoint)
            deployment, pool, _ = await self._ready(deployment, request.target_variant)
            if pool.models is None:
                raise not_multi_model(deployment.endpoint)
        response, replica, elapsed = await self.models.invoke(
            deployment.endpoint,
            pool,
            pool.models,
            target_model,
            _headers(request),
            request.body,
        )
        return _answer(response, replica, elapsed)

    async def _serverless(
        self, deployment: Deployment, pool: ServerlessPool, request: Invocation
    ) -> Answer:
        try:
            return await self._invoke_serverless(pool, request)
        except PoolRetired:
            # An update swapped the deployment while this request waited for a cold
            # start: the new deployment serves it.
            current = self.deployments.get(deployment.endpoint)
            if current is None or current is deployment:
                raise
            return await self.invoke(current, request)

    async def _invoke_serverless(self, pool: ServerlessPool, request: Invocation) -> Answer:
        """Within MaxConcurrency, on a ready instance or one started for it; an instance
        that drops the request is left to the health check and the request waits for
        another."""
        pool.admit()
        billed = 0.0  # time instances spent on it: what serverless inference charges
        try:
            for _ in range(2):
                replica = await pool.ready_replica()
                sent = time.perf_counter()
                try:
                    return await self._send(replica, request)
                except _RETRYABLE as exc:
                    replica.healthy = False
                    failure = exc
                finally:
                    billed += time.perf_counter() - sent
            raise ServiceUnavailable(
                f"Endpoint {pool.endpoint}: instances failed to answer ({failure})."
            )
        finally:
            pool.leave(billed)

    async def stream(
        self,
        deployment: Deployment,
        request: Invocation,
        body: AsyncIterable[bytes],
        length: int,
        sink: Callable[[bytes], Awaitable[None]],
        timeout_s: float,
    ) -> Answer:
        """Asynchronous inference: `request.body` is ignored, `length` bytes come from
        `body` and a successful answer's body goes to `sink`. No retry here (the stream
        is spent); an unreachable instance is taken out of rotation and the caller retries
        the whole request."""
        pool = self._pool_now(deployment, request.target_variant)
        replica = _pick(pool)
        replica.acquire()
        started = time.perf_counter()
        try:
            response = await self._client.stream(
                replica.address,
                b"/invocations",
                _headers(request),
                body,
                length,
                sink,
                timeout_s,
            )
        except InstanceUnreachable:
            replica.healthy = False
            raise
        except TimeoutError:
            raise _timed_out(replica.variant, timeout_s) from None
        finally:
            replica.release()
        return _answer(response, replica, time.perf_counter() - started)

    async def stream_response(
        self,
        deployment: Deployment,
        request: Invocation,
        on_head: Callable[[Answer], Awaitable[None]],
        sink: Callable[[bytes], Awaitable[None]],
    ) -> Answer:
        """InvokeEndpointWithResponseStream: `on_head` hears the variant and content type
        of a successful answer before its first part, `sink` takes each part as the
        instance sends it. Before that the errors are InvokeEndpoint's (a model that fails
        before its first part is a ModelError); after it, StreamInterrupted. The model
        timeout bounds the time to the first part and each gap between parts. No retry:
        a request that reached a model may have had effects, as with InvokeEndpoint."""
        deployment = deployment.route(request.target_variant)
        pool = self._pool(deployment, request.target_variant)
        replica = None
        if pool is not None and not isinstance(pool, ServerlessPool):
            replica = pool.pick()
        if replica is None and not isinstance(pool, ServerlessPool):
            deployment, pool, replica = await self._ready(deployment, request.target_variant)
        if replica is None:
            raise InvocationValidationError(
                f"Endpoint {deployment.endpoint} is a serverless endpoint; response streaming "
                "is available on real-time endpoints with instances. Use InvokeEndpoint."
            )
        if pool is not None and pool.models is not None:
            raise InvocationValidationError(
                f"Endpoint {deployment.endpoint} is a multi-model endpoint; response "
                "streaming is available on single-model endpoints. Use InvokeEndpoint "
                "with TargetModel."
            )
        if replica.pipeline is not None or request.target_container is not None:
            pipeline.refuse_streaming(replica, request)
        return await self._stream_from(replica, request, on_head, sink, deployment.endpoint)

    async def stream_component(
        self,
        endpoint: str,
        name: str,
        request: Invocation,
        on_head: Callable[[Answer], Awaitable[None]],
        sink: Callable[[bytes], Awaitable[None]],
    ) -> Answer:
        """InvokeEndpointWithResponseStream with InferenceComponentName: as
        `stream_response`, from one of the component's copies (waited for while none is
        ready)."""
        route = self._component(endpoint, name, request)
        replica = route.pool.pick() or await self._copy(route)
        return await self._stream_from(replica, request, on_head, sink, endpoint)

    async def _stream_from(
        self,
        replica: Replica,
        request: Invocation,
        on_head: Callable[[Answer], Awaitable[None]],
        sink: Callable[[bytes], Awaitable[None]],
        endpoint: str,
    ) -> Answer:
        replica.acquire()
        started = time.perf_counter()
        announced = False

        async def announce(response: Response) -> None:
            nonlocal announced
            announced = True
            await on_head(_answer(response, replica, time.perf_counter() - started))

        try:
            response = await self._client.stream_response(
                replica.address,
                b"/invocations",
                _headers(request),
                request.body,
                announce,
                sink,
                self._timeout_s,
            )
        except InstanceUnreachable as exc:
            if announced:  # the model server ends a stream this way when the model raises
                raise StreamInterrupted(
                    "ModelStreamError",
                    "StreamBroken",
                    f"The stream from variant {replica.variant} broke off ({exc}); see the "
                    "instance log for the model's error.",
                ) from None
            replica.healthy = False
            raise ServiceUnavailable(
                f"Endpoint {endpoint}: the instance failed to answer ({exc})."
            ) from None
        except TimeoutError:
            if announced:
                raise StreamInterrupted(
                    "ModelStreamError",
                    "ModelInvocationTimeExceeded",
                    f"The model of variant {replica.variant} sent nothing for "
                    f"{self._timeout_s:g} s mid-stream.",
                ) from None
            replica.timeouts.append(time.monotonic())
            raise _timed_out(replica.variant, self._timeout_s) from None
        finally:
            replica.release()
        return _answer(response, replica, time.perf_counter() - started)

    async def _send(self, replica: Replica, request: Invocation) -> Answer:
        if replica.pipeline is not None or request.target_container is not None:
            return await self._send_pipeline(replica, request)
        replica.acquire()
        started = time.perf_counter()
        try:
            response = await self._client.request(
                replica.address,
                b"POST",
                b"/invocations",
                _headers(request),
                request.body,
                self._timeout_s,
            )
        except TimeoutError:
            # The health check replaces an instance that keeps timing out alone.
            replica.timeouts.append(time.monotonic())
            raise _timed_out(replica.variant, self._timeout_s) from None
        finally:
            replica.release()
        return _answer(response, replica, time.perf_counter() - started)

    async def _send_pipeline(self, replica: Replica, request: Invocation) -> Answer:
        """A multi-container instance's hops, or the refusal of a TargetContainerHostname
        it cannot take (see :mod:`.pipeline`)."""
        chosen = pipeline.hops(replica, request)
        started = time.perf_counter()
        body, content_type, custom_attributes = await pipeline.send(
            self._client, replica, chosen, request, self._timeout_s
        )
        return Answer(
            body=body,
            content_type=content_type,
            custom_attributes=custom_attributes,
            variant=replica.variant,
            model_seconds=time.perf_counter() - started,
        )


def _components_only(deployment: Deployment, target: str | None) -> bool:
    """The request can only be for inference components: its target variant, or every
    variant, hosts them."""
    if target is not None:
        pool = deployment.variants.get(target)
        return pool is not None and pool.components
    return all(p.components for p in deployment.variants.values())


def _scaled_to_zero(deployment: Deployment, target: str | None) -> bool:
    """No instance is coming for the request: its target variant, or every variant, is
    scaled to zero and has none left."""
    if target is not None:
        pools = [deployment.variants[target]] if target in deployment.variants else []
    else:
        pools = list(deployment.variants.values())
    return bool(pools) and all(
        p.scaled_to_zero and not p.replicas and not isinstance(p, ServerlessPool) for p in pools
    )


def _pick(pool: VariantPool) -> Replica:
    replica = pool.pick()
    if replica is None:
        raise ServiceUnavailable(f"No healthy instance in variant {pool.name}.")
    return replica


def _headers(request: Invocation) -> list[tuple[bytes, bytes]]:
    headers = []
    if request.content_type:
        headers.append((b"Content-Type", request.content_type.encode("latin-1")))
    if request.accept:
        headers.append((b"Accept", request.accept.encode("latin-1")))
    if request.custom_attributes:
        headers.append(
            (b"X-Amzn-SageMaker-Custom-Attributes", request.custom_attributes.encode("latin-1"))
        )
    return headers


def _timed_out(variant: str, timeout_s: float) -> ModelError:
    return ModelError(
        f"Your invocation timed out while waiting for a response from primary of "
        f"variant {variant}: the model took longer than {timeout_s:g} s.",
        OriginalStatusCode=504,
        OriginalMessage="model timeout",
    )


def _answer(response: Response, replica: Replica, elapsed: float) -> Answer:
    if response.status >= 400:
        raise _model_error(response.status, response.body.decode(errors="replace")[:1024])
    content_type = response.header(b"content-type")
    custom_attributes = response.header(b"x-amzn-sagemaker-custom-attributes")
    return Answer(
        body=response.body,
        content_type=content_type.decode("latin-1") if content_type else "application/octet-stream",
        custom_attributes=custom_attributes.decode("latin-1") if custom_attributes else None,
        variant=replica.variant,
        model_seconds=elapsed,
        batch=_batch(response),
    )


def _batch(response: Response) -> tuple[int, float] | None:
    """What a batching model server says of the request's batch (see Answer.batch)."""
    wait = response.header(QUEUE_WAIT_HEADER)
    if wait is None:
        return None
    size = response.header(BATCH_SIZE_HEADER)
    try:
        return (int(size) if size else 0), int(wait) / 1e6
    except ValueError:
        return None
