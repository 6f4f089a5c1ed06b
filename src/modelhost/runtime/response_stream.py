"""InvokeEndpointWithResponseStream: `POST /endpoints/{name}/invocations-response-stream`.

The instance answers POST /invocations with a chunked body; each chunk is re-framed as a
`PayloadPart` event and sent on the moment it arrives, so a client sees a generative
model's first tokens while the rest are still being produced. Until the first part is
sent, failures are the HTTP errors InvokeEndpoint gives (ValidationError, ModelError 424,
ServiceUnavailable); after it the status line is gone, so a failure becomes the last event
of the stream (`ModelStreamError` / `InternalStreamFailure`), as on SageMaker.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from modelhost import metrics
from modelhost.disconnect import cancelled_on_disconnect
from modelhost.domain.inference_components import HEADER as COMPONENT_HEADER
from modelhost.errors import SageMakerError
from modelhost.router import Answer, StreamInterrupted
from modelhost.runtime import eventstream
from modelhost.runtime.invoke import (
    RealtimeInvoker,
    count_answer,
    count_error,
    invocation,
    response_headers,
)

log = logging.getLogger(__name__)


async def stream_invocation(
    invoker: RealtimeInvoker,
    name: str,
    body: bytes,
    headers: dict[bytes, bytes],
    started: float,
    receive: Any,
    send: Any,
) -> None:
    """Answer one request on `send` (ASGI), its body already read from `receive`. Raises
    SageMakerError only while nothing has been sent, so the caller can still answer with an
    HTTP error. A client that goes away ends the model's work too."""
    # With InferenceComponentName: one of the component's copies, not a variant's instance.
    component = await invoker.component(name, headers) if COMPONENT_HEADER in headers else None
    deployment = None if component is not None else await invoker.deployment(name)
    request = invocation(body, headers, b"x-amzn-sagemaker-accept")
    head: Answer | None = None

    async def on_head(answer: Answer) -> None:
        nonlocal head
        await send(
            {"type": "http.response.start", "status": 200, "headers": _stream_headers(answer)}
        )
        head = answer

    async def sink(data: bytes) -> None:
        await send(
            {
                "type": "http.response.body",
                "body": eventstream.payload_part(data),
                "more_body": True,
            }
        )

    answer = None
    try:
        async with cancelled_on_disconnect(receive):
            if deployment is None:
                assert component is not None
                answer = await invoker.router.stream_component(
                    name, component, request, on_head, sink
                )
            else:
                answer = await invoker.router.stream_response(deployment, request, on_head, sink)
    except SageMakerError as error:  # only before the head: after it, StreamInterrupted
        if deployment is not None:
            count_error(name, deployment, request, error)
        raise
    except StreamInterrupted as interrupted:
        assert head is not None
        log.warning("endpoint %s: stream ended early: %s", name, interrupted.message)
        metrics.INVOCATION_5XX.labels(name, head.variant).inc()
        final = eventstream.stream_error(
            interrupted.exception_type, interrupted.message, interrupted.error_code
        )
    except Exception:
        if head is None:
            raise
        log.exception("endpoint %s: stream failed", name)
        metrics.INVOCATION_5XX.labels(name, head.variant).inc()
        final = eventstream.stream_error(
            "InternalStreamFailure", "The stream failed inside modelhost; try the request again."
        )
    else:
        if answer is None:  # the client went away; the instance's answer was dropped
            return
        count_answer(name, answer, started)
        final = b""
    await send({"type": "http.response.body", "body": final, "more_body": False})


def _stream_headers(answer: Answer) -> list[tuple[bytes, bytes]]:
    """InvokeEndpoint's headers, with the model's content type moved to
    X-Amzn-SageMaker-Content-Type: Content-Type names the event stream itself."""
    headers = [
        (b"x-amzn-sagemaker-content-type" if key == b"content-type" else key, value)
        for key, value in response_headers(answer)
    ]
    headers.append((b"content-type", eventstream.CONTENT_TYPE))
    headers.append((b"x-amzn-requestid", str(uuid.uuid4()).encode()))
    return headers
