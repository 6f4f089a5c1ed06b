"""InvokeEndpointAsync: `POST /endpoints/{name}/async-invocations`.

Accepting a request only checks it and writes it to the durable queue; the answer (202
with the InferenceId and where the result or the error will appear) goes back at once and
the asynchronous inference workers do the rest. The input never passes through here: the
client put it in the object store and names it in InputLocation.
"""

from __future__ import annotations

import asyncio
import errno
import time
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import botocore.session
import regex

from modelhost.errors import InvocationValidationError, ServiceUnavailable
from modelhost.queue import Job, LoopQueue
from modelhost.runtime.invoke import endpoint_not_found
from modelhost.storage import LoopStore, ObjectStore, StateStore

DEFAULT_TTL_S = 6 * 3600
DEFAULT_INVOCATION_TIMEOUT_S = 15 * 60
_H = "x-amzn-sagemaker-"
_T = TypeVar("_T")
# SageMaker's NotificationConfig takes SNS topics only; a self-hosted setup may have no SNS,
# so webhooks are named by these tags of the endpoint config.
WEBHOOK_TAGS = {
    "modelhost:SuccessWebhook": "SuccessWebhook",
    "modelhost:ErrorWebhook": "ErrorWebhook",
}


class AsyncAccepter:
    def __init__(
        self,
        store: StateStore,
        objects: ObjectStore,
        queue: LoopQueue,
        account_id: str,
        max_payload_bytes: int,
        min_ttl_s: int,
        wake: Callable[[], None],
    ) -> None:
        self.min_ttl_s = min_ttl_s
        self._pending: list[tuple[Job, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.store = LoopStore(store)
        self.objects = objects
        self.queue = queue
        self.account_id = account_id
        self.max_payload_bytes = max_payload_bytes
        self.wake = wake

    async def accept(
        self, name: str, headers: dict[bytes, bytes]
    ) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
        """Queue one request; returns the JSON body and the headers of the 202 answer."""
        record = await self.store.get("endpoint", name)
        if record is None:
            raise endpoint_not_found(name, self.account_id)
        config = record["_desired"]["config"].get("AsyncInferenceConfig")
        if config is None:
            raise InvocationValidationError(
                f"Endpoint {name} is not configured for asynchronous inference: its endpoint "
                "config has no AsyncInferenceConfig."
            )
        if record["EndpointStatus"] in ("Failed", "Deleting"):
            raise InvocationValidationError(
                f"Endpoint {name} cannot accept requests: its status is {record['EndpointStatus']}."
            )
        input_location = _get(headers, "inputlocation")
        if not input_location:
            raise InvocationValidationError("InputLocation is required.")
        _check_headers(headers)
        await object_io(self.objects, self._check_input, input_location)
        # Without a ContentType the input object's own is the request's, as the sagemaker
        # SDK's predict_async expects (it uploads the input with one and sends none).
        content_type = _get(headers, "content-type") or await object_io(
            self.objects, self._input_content_type, input_location
        )
        tags = await self.store.tags(record["_desired"]["config"]["EndpointConfigArn"])
        job = self._job(name, record, config, headers, input_location, tags, content_type)
        await self._enqueue(job)
        return {"InferenceId": job.inference_id}, [
            (b"x-amzn-sagemaker-outputlocation", job.output_location.encode()),
            (b"x-amzn-sagemaker-failurelocation", job.failure_location.encode()),
        ]

    async def _enqueue(self, job: Job) -> None:
        """Durable before the 202: requests that arrive together share one commit, and
        so do those that arrive while a put is on its way to a remote queue."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((job, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        """Put what is pending, one batch at a time, until nothing is."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self.queue.put([job for job, _ in batch])
                except Exception as exc:  # the queue is down: each request answers with it
                    down = ServiceUnavailable(
                        f"The asynchronous request queue cannot be reached: "
                        f"{exc or type(exc).__name__}. Try again."
                    )
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(down)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
                self.wake()
        finally:
            self._flushing = None

    def _input_content_type(self, uri: str) -> str | None:
        try:
            return self.objects.content_type(uri)
        except (OSError, ValueError):  # gone since it was checked: the worker reports it
            return None

    def _check_input(self, uri: str) -> None:
        """The input must be one object of the store, of a size asynchronous inference
        takes. A name the store cannot hold (a local path while those are off, a key
        segment too long for the embedded store's disk) is the caller's to change; any
        other failure to look is the store's, and retriable."""
        try:
            size = self.objects.size(uri)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ValueError) as exc:
            raise InvocationValidationError(
                f"InputLocation {uri} does not name an object: {exc}"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InvocationValidationError(
                    f"InputLocation {uri} is too long a name for the object store."
                ) from None
            raise ServiceUnavailable(
                f"The object store cannot be reached to check InputLocation {uri}: "
                f"{exc.strerror or type(exc).__name__}. Try again."
            ) from None
        if size > self.max_payload_bytes:
            raise InvocationValidationError(
                f"InputLocation {uri} holds {size} bytes; asynchronous inference accepts up "
                f"to {self.max_payload_bytes // 1024**2} MB."
            )

    def _job(
        self,
        name: str,
        record: dict[str, Any],
        config: dict[str, Any],
        headers: dict[bytes, bytes],
        input_location: str,
        tags: dict[str, str],
        content_type: str | None,
    ) -> Job:
        output = config["OutputConfig"]
        job_id = str(uuid.uuid4())
        extension = _get(headers, "s3outputpathextension")
        output_path = output["S3OutputPath"].rstrip("/")
        if extension:
            output_path = f"{output_path}/{extension.strip('/')}"
        failure_path = output.get("S3FailurePath", output["S3OutputPath"]).rstrip("/")
        filename = _get(headers, "filename") or f"{job_id}.out"
        now = time.time()
        return Job(
            id=job_id,
            endpoint=name,
            inference_id=_get(headers, "inference-id") or job_id,
            input_location=input_location,
            output_location=f"{output_path}/{filename}",
            failure_location=f"{failure_path}/{job_id}-error.out",
            created=now,
            expires_at=now
            + _int(headers, "RequestTTLSeconds", DEFAULT_TTL_S, self.min_ttl_s, 21600),
            timeout_s=_int(
                headers, "InvocationTimeoutSeconds", DEFAULT_INVOCATION_TIMEOUT_S, 1, 3600
            ),
            content_type=content_type,
            accept=_get(headers, "accept"),
            custom_attributes=_get(headers, "custom-attributes"),
            notification=_notification(output, tags),
        )


def _notification(output: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """Where a finished request is announced: the config's topics, and webhooks named by
    the endpoint config's tags."""
    targets = {
        key: value
        for key, value in output.get("NotificationConfig", {}).items()
        if key in ("SuccessTopic", "ErrorTopic")
    }
    targets.update({key: tags[tag] for tag, key in WEBHOOK_TAGS.items() if tag in tags})
    return targets


async def object_io(objects: ObjectStore, call: Callable[..., _T], *args: Any) -> _T:
    """Run a short object-store call: on a worker thread when it goes to S3, directly when
    the objects are on local disk, where a stat or a small write takes less time than
    the hop to a thread and back (measured: ~10 µs against ~60 µs)."""
    if objects.uses_s3:
        return await asyncio.to_thread(call, *args)
    return call(*args)


# The headers that name an object or part of one: checked against sagemaker-runtime's own
# limits and patterns, and, for those that become part of an object key, refused when they
# would climb out of the output path. InputLocation's scheme is the object store's to
# judge (local paths are an operator's choice), so only its length is checked here.
# RequestTTLSeconds and InvocationTimeoutSeconds are numbers, checked where they are read.
_NAME_HEADERS = (
    "InputLocation",
    "S3OutputPathExtension",
    "Filename",
    "InferenceId",
    "ContentType",
    "Accept",
    "CustomAttributes",
)
_KEY_PARTS = ("S3OutputPathExtension", "Filename")


@cache
def _header_rules() -> dict[str, tuple[bytes, str, int, int, regex.Pattern[str] | None]]:
    """Member name -> (header, header as the client spells it, min and max length,
    pattern), from botocore's model of InvokeEndpointAsync."""
    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    members = model.operation_model("InvokeEndpointAsync").input_shape.members
    rules = {}
    for member in _NAME_HEADERS:
        shape = members[member]
        header = shape.serialization["name"]
        pattern = shape.metadata.get("pattern") if member != "InputLocation" else None
        rules[member] = (
            header.lower().encode(),
            header,
            shape.metadata.get("min", 0),
            shape.metadata.get("max", 1 << 30),
            regex.compile(pattern, regex.DOTALL) if pattern else None,
        )
    return rules


def _check_headers(headers: dict[bytes, bytes]) -> None:
    """Refuse, naming the header, any name SageMaker would refuse or that would lead a
    write out of the endpoint's output path: such a request must fail here with a 400,
    not be queued, run and then fail to write its answer."""
    for member, (key, header, low, high, pattern) in _header_rules().items():
        raw = headers.get(key)
        if raw is None:
            continue
        value = raw.decode("latin-1")
        if not low <= len(value) <= high:
            raise InvocationValidationError(
                f"{header} must be {low} to {high} characters long; it has {len(value)}."
            )
        if pattern is not None and not pattern.fullmatch(value):
            raise InvocationValidationError(
                f"{header} {value[:128]!r} must match the pattern {pattern.pattern}."
            )
        if member in _KEY_PARTS and any(
            part in (".", "..") for part in value.strip("/").split("/")
        ):
            raise InvocationValidationError(
                f"{header} {value[:128]!r} must not contain '.' or '..' path segments: it "
                "names a key under the endpoint's output path."
            )


def _get(headers: dict[bytes, bytes], name: str) -> str | None:
    value = headers.get((_H + name).encode())
    return value.decode("latin-1") if value is not None else None


def _int(headers: dict[bytes, bytes], name: str, default: int, low: int, high: int) -> int:
    raw = _get(headers, name.lower())
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvocationValidationError(
            f"X-Amzn-SageMaker-{name} must be a whole number of seconds from {low} to {high}."
        )
    return int(raw)
