"""InvokeEndpoint: the real-time runtime path, `POST /endpoints/{name}/invocations`.

This is the hot path of every prediction, so it stays lean: headers are read straight
from the ASGI scope, the body is read once with the 6 MB limit enforced while it arrives,
and everything else is the router's job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from modelhost import metrics
from modelhost.domain import kinds
from modelhost.domain.inference_components import HEADER as COMPONENT_HEADER
from modelhost.errors import InvocationValidationError, SageMakerError, ServiceUnavailable
from modelhost.router import (
    Answer,
    ComponentRoute,
    Deployment,
    Invocation,
    Router,
    unknown_component,
)
from modelhost.runtime.shadow import ShadowMirror
from modelhost.storage import LoopStore, StateStore

# Statuses of an endpoint that takes invocations, whether or not its instances are up yet.
_SERVING = frozenset({"InService", "Updating", "UpdateRollbackFailed"})


class PayloadTooLarge(InvocationValidationError):
    status = 413


def endpoint_not_found(name: str, account_id: str) -> InvocationValidationError:
    return InvocationValidationError(f"Endpoint {name} of account {account_id} not found.")


class RealtimeInvoker:
    def __init__(
        self,
        router: Router,
        store: StateStore,
        account_id: str,
        max_payload_bytes: int,
        unshared: Mapping[str, str],
    ) -> None:
        self.router = router
        # Endpoints another server runs that are not routed from here, with that server.
        self.unshared = unshared
        self.store = LoopStore(store)
        self.account_id = account_id
        self.max_payload_bytes = max_payload_bytes
        self.shadows = ShadowMirror(router)

    async def deployment(self, name: str) -> Deployment:
        """The deployment that serves `name`. An endpoint that serves (InService, or
        Updating: the old config serves meanwhile) but is not in the router yet, because
        the server just started or its controller is bringing its instances back, is
        waited for, at most the model timeout; an endpoint that does not serve is the
        caller's to fix (400). An endpoint whose instances another server sharing the
        state store runs is served from the router's shared view of them (kept in memory
        by the instance registry), and waited for while that view has no instance in
        rotation (its owner died and another is taking over). Only this path, never a
        request to a deployment the router holds or shares, reads the store, before the
        wait."""
        record = (
            None if self._routable(name) is not None else await self.store.get("endpoint", name)
        )

        def find() -> Deployment | None:
            deployment = self._routable(name)
            if deployment is not None:
                if deployment.asynchronous:
                    # SageMaker: an AsyncInferenceConfig means the endpoint only takes
                    # asynchronous invocations.
                    raise InvocationValidationError(
                        f"Endpoint {name} is an asynchronous endpoint (its endpoint config "
                        "has an AsyncInferenceConfig); invoke it with InvokeEndpointAsync."
                    )
                return deployment
            if record is None:
                raise endpoint_not_found(name, self.account_id)
            if record["EndpointStatus"] not in _SERVING:
                raise InvocationValidationError(
                    f"Endpoint {name} is not ready to serve: its status is "
                    f"{record['EndpointStatus']}."
                )
            if (owner := self.unshared.get(name)) is not None:
                raise ServiceUnavailable(
                    f"Endpoint {name} has a serverless variant and runs on another modelhost "
                    f"server ({owner}) that shares this state store; serverless endpoints are "
                    "served only by the server that runs them. Retry the request on that "
                    "server."
                )
            return None

        return await self.router.wait_for(find, f"Endpoint {name} did not get its instances back")

    def _routable(self, name: str) -> Deployment | None:
        """The deployment this server runs for `name`, else another server's with an
        instance in rotation; no I/O."""
        deployment = self.router.deployments.get(name)
        if deployment is None:
            deployment = self.router.shared.get(name)
            if deployment is not None and not deployment.serving():
                return None
        return deployment

    def check_declared_length(self, headers: dict[bytes, bytes]) -> None:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_payload_bytes:
            raise self.too_large()

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Request payload exceeds the real-time limit of "
            f"{self.max_payload_bytes // (1024 * 1024)} MB; use asynchronous inference "
            "for larger payloads."
        )

    async def invoke(
        self, name: str, body: bytes, headers: dict[bytes, bytes], started: float
    ) -> Answer:
        if COMPONENT_HEADER in headers:
            return await self._invoke_component(name, body, headers, started)
        deployment = self.router.deployments.get(name)
        if deployment is None or deployment.asynchronous:
            deployment = await self.deployment(name)
        request = invocation(body, headers, b"accept")
        try:
            answer = await self.router.invoke(deployment, request)
        except SageMakerError as error:
            count_error(name, deployment, request, error)
            raise
        if deployment.capture is not None or deployment.shadows:
            self._copy(name, deployment, request, answer, headers)
        # Counted once the answer is on its way (the caller writes it before the task
        # yields): a prediction's client does not wait for Prometheus' locks.
        ended = time.perf_counter()
        asyncio.get_running_loop().call_soon(count_answer, name, answer, started, ended)
        return answer

    async def _invoke_component(
        self, name: str, body: bytes, headers: dict[bytes, bytes], started: float
    ) -> Answer:
        """InvokeEndpoint with InferenceComponentName."""
        component = await self.component(name, headers)
        request = invocation(body, headers, b"accept")
        try:
            answer = await self.router.invoke_component(name, component, request)
        except SageMakerError as error:
            count_component_error(name, self.router.components.get(component), error)
            raise
        ended = time.perf_counter()
        asyncio.get_running_loop().call_soon(count_answer, name, answer, started, ended)
        route = self.router.components.get(component)
        if route is not None:
            route.answered(answer.model_seconds, max(ended - started - answer.model_seconds, 0.0))
        return answer

    async def component(self, name: str, headers: dict[bytes, bytes]) -> str:
        """The inference component a request names, once the router has its route (this
        server's, or the shared view of another server's copies): one it has no route for
        yet (the server just started) but the store knows is waited for."""
        component = headers[COMPONENT_HEADER].decode("latin-1")
        if self.router.component(component) is None:
            record = await self.store.get(kinds.INFERENCE_COMPONENT, component)
            if (
                record is None
                or record["EndpointName"] != name
                or record["InferenceComponentStatus"] == "Deleting"
            ):
                if name not in self.router.deployments and (
                    await self.store.get(kinds.ENDPOINT, name) is None
                ):
                    raise endpoint_not_found(name, self.account_id)
                raise unknown_component(component, name)
            await self.router.wait_for(
                lambda: self.router.component(component),
                f"Inference component {component} did not get its copies back",
            )
        return component

    def _copy(
        self,
        name: str,
        deployment: Deployment,
        request: Invocation,
        answer: Answer,
        headers: dict[bytes, bytes],
    ) -> None:
        """Data capture and shadow variants: both off the client's path."""
        inference_id = _header(headers, b"x-amzn-sagemaker-inference-id")
        if deployment.capture is not None:
            deployment.capture.record(
                answer.variant,
                request.content_type,
                request.body,
                answer.content_type,
                answer.body,
                inference_id,
            )
        if deployment.shadows:
            self.shadows.mirror(name, deployment, request, inference_id)


def invocation(body: bytes, headers: dict[bytes, bytes], accept: bytes) -> Invocation:
    """The request as the router forwards it; `accept` names the header that carries
    Accept (InvokeEndpointWithResponseStream calls it X-Amzn-SageMaker-Accept)."""
    return Invocation(
        body=body,
        content_type=_header(headers, b"content-type"),
        accept=_header(headers, accept),
        custom_attributes=_header(headers, b"x-amzn-sagemaker-custom-attributes"),
        target_variant=_header(headers, b"x-amzn-sagemaker-target-variant"),
        target_model=_header(headers, b"x-amzn-sagemaker-target-model"),
        target_container=_header(headers, b"x-amzn-sagemaker-target-container-hostname"),
    )


def count_error(
    name: str, deployment: Deployment, request: Invocation, error: SageMakerError
) -> None:
    # Only real variant names become labels: a client's made-up TargetVariant
    # must not add a time series per request.
    target = request.target_variant
    variant = target if target in deployment.variants else "-"
    counter = metrics.INVOCATION_4XX if error.status < 500 else metrics.INVOCATION_5XX
    counter.labels(name, variant).inc()


def count_component_error(name: str, route: ComponentRoute | None, error: SageMakerError) -> None:
    """An invocation of an inference component that failed: its endpoint's variant's
    error count, and the component's own (Invocation4XXErrors, Invocation5XXErrors by
    InferenceComponentName)."""
    if route is None or route.endpoint != name:
        variant = "-"
    else:
        variant = route.variant
        route.failed(error.status)
    counter = metrics.INVOCATION_4XX if error.status < 500 else metrics.INVOCATION_5XX
    counter.labels(name, variant).inc()


def count_answer(name: str, answer: Answer, started: float, ended: float | None = None) -> None:
    """Count one answer; `ended` is when it was ready (now if not given)."""
    total = (time.perf_counter() if ended is None else ended) - started
    series = metrics.for_variant(name, answer.variant)
    series.answered(answer.model_seconds, answer.batch)
    series.overhead(max(total - answer.model_seconds, 0.0))


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


def response_headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", answer.content_type.encode("latin-1")),
        (b"x-amzn-invoked-production-variant", answer.variant.encode("latin-1")),
    ]
    if answer.custom_attributes:
        headers.append(
            (b"x-amzn-sagemaker-custom-attributes", answer.custom_attributes.encode("latin-1"))
        )
    return headers
