"""Invoking a multi-container instance: a serial pipeline's hops, or one Direct container.

The chaining happens here, one hop per container from the router, because each container
is its own model server in the instance and the router already holds keep-alive
connections to every instance's ports: no extra process or hop inside the instance, and a
single-container request never comes here (the router's one check is whether the
replica has a pipeline or the request names a container).

Between serial containers the body is the previous container's answer and its
Content-Type the previous answer's; only the last container gets the caller's Accept (an
intermediate container answers in its default format, `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`,
as SageMaker pipelines configure theirs). Custom attributes go to every container; the
answer's are the last container's. One deadline, the model timeout, bounds all the hops.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from modelhost.errors import InvocationValidationError, ModelError, ServiceUnavailable
from modelhost.instances import InstanceClient, InstanceUnreachable, Pipeline
from modelhost.router.pool import Replica

if TYPE_CHECKING:
    from modelhost.router.router import Invocation


def hops(replica: Replica, request: Invocation) -> Pipeline:
    """The hops to run for `request` on a multi-container instance; ValidationError for a
    TargetContainerHostname the endpoint cannot take (a single-container one included) or
    a Direct endpoint asked without one, as SageMaker refuses them."""
    pipeline = replica.pipeline
    target = request.target_container
    if pipeline is None or pipeline.mode != "Direct":
        if target is not None or pipeline is None:
            raise InvocationValidationError(
                f"TargetContainerHostname {target} was given, but the endpoint (variant "
                f"{replica.variant}) is not configured for direct invocation: only a model "
                "with InferenceExecutionConfig.Mode Direct takes it."
            )
        return pipeline
    if target is None:
        raise InvocationValidationError(
            f"The endpoint (variant {replica.variant}) is configured for direct invocation; "
            "TargetContainerHostname must name one of its containers: "
            f"{', '.join(pipeline.hostnames)}."
        )
    address = pipeline.address_of(target)
    if address is None:
        raise InvocationValidationError(
            f"TargetContainerHostname {target} is not a container of the endpoint (variant "
            f"{replica.variant}); its containers: {', '.join(pipeline.hostnames)}."
        )
    return Pipeline(pipeline.mode, ((target, address),))


def refuse_streaming(replica: Replica, request: Invocation) -> None:
    """Response streaming passes one container's chunks straight to the caller, which a
    chain of containers cannot do: a multi-container endpoint is refused (and a
    TargetContainerHostname refused as InvokeEndpoint refuses it)."""
    hops(replica, request)
    raise InvocationValidationError(
        f"The endpoint (variant {replica.variant}) runs a multi-container model; response "
        "streaming is available for single-container models. Use InvokeEndpoint."
    )


async def send(
    client: InstanceClient,
    replica: Replica,
    pipeline: Pipeline,
    request: Invocation,
    timeout_s: float,
) -> tuple[bytes, str, str | None]:
    """Run the pipeline's hops in order on one instance: the last answer's body, content
    type and custom attributes. An instance whose first
    container cannot be reached raises InstanceUnreachable (nothing ran: the router may
    retry elsewhere); a later container that cannot be reached takes the instance out of
    rotation and is a 503, since earlier containers already ran."""
    replica.acquire()
    deadline = time.perf_counter() + timeout_s
    body = request.body
    content_type = request.content_type
    custom_attributes: bytes | None = None
    last = len(pipeline.hops) - 1
    try:
        for index, (hostname, address) in enumerate(pipeline.hops):
            headers = []
            if content_type:
                headers.append((b"Content-Type", content_type.encode("latin-1")))
            if index == last and request.accept:
                headers.append((b"Accept", request.accept.encode("latin-1")))
            if request.custom_attributes:
                headers.append(
                    (
                        b"X-Amzn-SageMaker-Custom-Attributes",
                        request.custom_attributes.encode("latin-1"),
                    )
                )
            try:
                response = await client.request(
                    address,
                    b"POST",
                    b"/invocations",
                    headers,
                    body,
                    max(deadline - time.perf_counter(), 0.001),
                )
            except InstanceUnreachable as exc:
                if index == 0:
                    raise
                replica.healthy = False
                raise ServiceUnavailable(
                    f"Container {hostname} of variant {replica.variant} failed to answer "
                    f"({exc}); try again shortly."
                ) from None
            except TimeoutError:
                replica.timeouts.append(time.monotonic())
                raise ModelError(
                    f"Your invocation timed out while waiting for a response from container "
                    f"{hostname} of variant {replica.variant}: the model took longer than "
                    f"{timeout_s:g} s.",
                    OriginalStatusCode=504,
                    OriginalMessage="model timeout",
                ) from None
            if response.status >= 400:
                message = response.body.decode(errors="replace")[:1024]
                side = "client" if response.status < 500 else "server"
                raise ModelError(
                    f"Received {side} error ({response.status}) from container {hostname} "
                    f'with message "{message}". See the instance log for more details.',
                    OriginalStatusCode=response.status,
                    OriginalMessage=message,
                )
            body = response.body
            answered = response.header(b"content-type")
            content_type = answered.decode("latin-1") if answered else None
            custom_attributes = response.header(b"x-amzn-sagemaker-custom-attributes")
    finally:
        replica.release()
    return (
        body,
        content_type or "application/octet-stream",
        custom_attributes.decode("latin-1") if custom_attributes else None,
    )
