"""One mini-batch through the model: filters, POST /invocations with ModelClientConfig's
timeout and retries, the join; and, when the model refuses a batch, the bisection that
names the record it refuses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from modelhost.batch import MiniBatch, ProcessingError
from modelhost.capture import InferenceIdError
from modelhost.controllers.transform.job import Job, JobFailed
from modelhost.instances import Instance, InstanceClient, InstanceUnreachable

Refusal = TypeVar("Refusal", bound=Exception)


class Rejected(Exception):
    """The model refused the input: a 4xx answer, or a 5xx one through every retry."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(
            message
            if message.startswith("the model")
            else f"the model answered {status}: {message}"
        )
        self.status = status


async def process(
    client: InstanceClient, job: Job, instance: Instance, uri: str, batch: MiniBatch
) -> bytes:
    """One mini-batch through filters, the model and the join: its output bytes."""
    processing = job.processing
    try:
        payload, inputs = (
            processing.request(batch.payload) if processing.active else (batch.payload, [])
        )
    except ProcessingError as exc:
        raise JobFailed(
            f"Object {uri}, record {batch.first_record + exc.record + 1}: {exc}"
        ) from None
    try:
        body, content_type = await invoke(client, job, instance, payload)
    except Rejected as rejected:
        raise JobFailed(await name_rejected(client, job, instance, uri, batch, rejected)) from None
    try:
        if processing.active:
            body = processing.response(inputs, body, content_type)
            # a join writes records in the input's format
            content_type = (
                job.record["TransformInput"].get("ContentType")
                if processing.join
                else content_type or processing.accept
            )
    except ProcessingError as exc:
        raise JobFailed(
            f"Object {uri}, record {batch.first_record + exc.record + 1}: {exc}"
        ) from None
    if job.capture is not None and job.capture.inference_ids:
        try:
            return job.capture.tag(body, content_type)
        except InferenceIdError as exc:
            raise JobFailed(f"Object {uri}, records from {batch.first_record + 1}: {exc}") from None
    if processing.active:
        return body
    if job.record["TransformOutput"]["AssembleWith"] == "Line" and not body.endswith(b"\n"):
        return body + b"\n"
    return body


async def invoke(
    client: InstanceClient, job: Job, instance: Instance, payload: bytes
) -> tuple[bytes, str | None]:
    """POST /invocations with ModelClientConfig's timeout and retries. A 4xx answer is
    the model refusing the input and is not retried; a 5xx one that persists through
    the retries counts as a refusal too."""
    failure = ""
    last_status = 0
    for _ in range(job.retries + 1):
        try:
            response = await client.request(
                instance.address, b"POST", b"/invocations", job.headers, payload, job.timeout_s
            )
        except TimeoutError:
            failure = f"the model took longer than {job.timeout_s:g} s"
            continue
        except InstanceUnreachable as exc:
            failure = str(exc)
            if not instance.is_alive():
                raise JobFailed(
                    f"Instance {instance.spec.instance_id} died: {instance.failure_detail()}"
                ) from None
            continue
        message = response.body.decode(errors="replace")[:512]
        if 400 <= response.status < 500:
            raise Rejected(response.status, message)
        if response.status >= 500:
            failure = f"the model answered {response.status}: {message}"
            last_status = response.status
            continue
        content_type = response.header(b"content-type")
        return response.body, content_type.decode("latin-1") if content_type else None
    if last_status:  # the model itself keeps failing on this input
        raise Rejected(last_status, f"{failure} ({job.retries + 1} attempts)")
    raise JobFailed(f"Invocation failed after {job.retries + 1} attempts: {failure}")


async def bisect(
    lines: list[bytes],
    rejected: Refusal,
    refusal: Callable[[list[bytes]], Awaitable[Refusal | None]],
) -> tuple[int, int, Refusal]:
    """The span [lo, hi) of `lines` down to which a refusal narrows, half a batch at a time
    (a few dozen requests at most for the largest batch), and the refusal of that span.
    `refusal` sends some lines and answers the refusal or None. The search stops early
    when each half passes alone: only together are they refused."""
    lo, hi = 0, len(lines)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        for low, high in ((lo, mid), (mid, hi)):
            refused = await refusal(lines[low:high])
            if refused is not None:
                lo, hi, rejected = low, high, refused
                break
        else:
            break
    return lo, hi, rejected


def refused_records(first_record: int, records: int, lo: int, hi: int) -> str:
    """How a FailureReason names the refused span [lo, hi) of a batch whose first record
    is `first_record` (0-based) and that holds `records` records; people count from 1."""
    first, last = first_record + 1, first_record + records
    if hi - lo == 1:
        return f"record {first + lo}"
    if hi - lo < records:
        return f"records {first + lo}-{first + hi - 1}"
    return f"records {first}-{last}"


async def name_rejected(
    client: InstanceClient,
    job: Job,
    instance: Instance,
    uri: str,
    batch: MiniBatch,
    rejected: Rejected,
) -> str:
    """FailureReason for a refused batch, naming the record the model refuses: line
    records are bisected down to the first refused record."""
    lo, hi = 0, batch.records
    if batch.records > 1 and job.record["TransformInput"]["SplitType"] == "Line":

        async def refusal(lines: list[bytes]) -> Rejected | None:
            payload = b"".join(lines)
            try:
                if job.processing.active:
                    payload = job.processing.request(payload)[0]
                await invoke(client, job, instance, payload)
            except Rejected as refused:
                return refused
            return None

        lo, hi, rejected = await bisect(batch.payload.splitlines(keepends=True), rejected, refusal)
    return f"Object {uri}, {refused_records(batch.first_record, batch.records, lo, hi)}: {rejected}"
