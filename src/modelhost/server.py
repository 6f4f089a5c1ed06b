"""The modelhost server: control plane, runtime, metrics and health on one port.

A plain ASGI callable rather than a framework router: a handful of prefix checks is all
the routing it needs. InvokeEndpoint, the hot path of every prediction, normally skips
ASGI altogether: modelhost.runtime.protocol answers it through `invocation_reply`, and
only the requests it leaves to the app (escaped paths, oversized headers) reach `_invoke`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import cbor2
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelhost import access, api, auth, console, header_limit, metrics, s3api
from modelhost.api import sts
from modelhost.config import Settings
from modelhost.controllers import (
    AsyncInferenceController,
    AutoscalingController,
    EndpointController,
    InstanceRegistry,
    MetricsRecorder,
    RecommendationController,
    TransformController,
    TransformScheduleController,
    cancel_all,
    sagemaker_metrics,
)
from modelhost.errors import (
    InvocationValidationError,
    RequestTimeout,
    RequestTooLarge,
    ResourceNotFound,
    SageMakerError,
    UnknownOperation,
    ValidationError,
)
from modelhost.history import MetricStore, retention
from modelhost.instances import open_backend
from modelhost.queue import STATES, JobQueue, LoopQueue, open_queue
from modelhost.router import Router
from modelhost.runtime import (
    DRAIN_BYTES,
    AsyncAccepter,
    Notifier,
    RealtimeInvoker,
    response_headers,
    stream_invocation,
)
from modelhost.storage import (
    DataDirGuard,
    FsspecObjectStore,
    LoopStore,
    Ownership,
    open_objects,
    open_store,
    server_id,
)

log = logging.getLogger(__name__)

Scope = dict[str, Any]
_JSON_11 = b"application/x-amz-json-1.1"
_INVOCATIONS = "/invocations"
_ASYNC_INVOCATIONS = "/async-invocations"
_STREAM_INVOCATIONS = "/invocations-response-stream"
_ASYNC_REQUESTS = "/async-requests"
# What `/endpoints/{name}/async-requests` lists without `?state=`.
_ASYNC_STATES = ("queued", "running", "failed")
# modelhost's own: every traffic step of a recommendation job, for latency charts
_CURVES = "/inference-recommendations-jobs/"
_MAX_CONTROL_BODY = 1024 * 1024
# How long an S3 request waits for a (re)starting rclone before a retriable 503.
_S3_START_WAIT_S = 10.0


class ModelhostApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # First: nothing in the data dir (its files, a previous run's control groups) is
        # touched before this server holds it alone.
        self.guard = DataDirGuard(settings.data_dir)
        try:
            self._open(settings)
        except BaseException:
            self.guard.abandon()
            raise
        self._controller_tasks: list[asyncio.Task[None]] = []

    def _open(self, settings: Settings) -> None:
        # The seams: each part behind its Protocol, picked from the settings here only.
        self.store = open_store(settings, self.guard)
        self.objects = open_objects(settings)
        backend = open_backend(settings)
        # Who does what when several servers share the state store.
        self.ownership = Ownership(
            self.store, server_id(settings.data_dir), settings.lease_period_s
        )
        self.router = Router(settings.model_timeout_s)
        # With a shared store: which instances serve each endpoint, so any server routes it.
        self.registry = InstanceRegistry(self.store, self.router, self.ownership)
        self.controller = EndpointController(
            settings, self.store, self.objects, backend, self.router, self.ownership
        )
        self.transforms = TransformController(
            settings, self.store, self.objects, backend, self.ownership
        )
        # The metrics scaling policies can track; other parts register theirs here.
        self.scaling_metrics = sagemaker_metrics(
            max(settings.autoscaling_window_s, 0.1), self.router
        )
        self.history = MetricStore(settings.metrics_path) if settings.metrics_history else None
        self.recorder = (
            None
            if self.history is None
            else MetricsRecorder(
                self.history,
                self.router,
                settings.metrics_flush_interval_s,
                retention(settings.metrics_high_res_retention_s, settings.metrics_retention_s),
                settings.metrics_max_bytes,
            )
        )
        self.context = api.Context(
            settings, self.store, self._notify, self.scaling_metrics, self.history
        )
        self.autoscaler = AutoscalingController(self.context, self.scaling_metrics, self.ownership)
        self.schedules = TransformScheduleController(self.context, self.ownership)
        self.recommender = RecommendationController(
            settings, self.store, self.objects, self.router, self.context, self.ownership
        )
        self.invoker = RealtimeInvoker(
            self.router,
            self.store,
            settings.account_id,
            settings.max_payload_bytes,
            self.registry.unshared,
        )
        queue = open_queue(
            settings.async_queue, settings.queue_path, **self.guard.checks(settings.queue_path)
        )
        self.guard.track(queue)
        self.queue = LoopQueue(queue)  # awaited calls: in threads when it is Redis
        self.async_controller = AsyncInferenceController(
            settings,
            self.store,
            self.objects,
            self.queue,
            self.router,
            self.context,
            Notifier(settings.region, settings.webhook_secret),
            self.ownership,
        )
        self.accepter = AsyncAccepter(
            self.store,
            self.objects,
            self.queue,
            settings.account_id,
            settings.max_async_payload_bytes,
            settings.async_min_ttl_s,
            self.async_controller.notify,
        )
        self.arns = access.Arns(settings.region, settings.account_id)
        self.console = console.Console(
            settings,
            self.context,
            self.arns,
            self._read_body,
            {
                "Modelhost.ListAsyncRequests": console.Read(
                    "EndpointName",
                    self._async_requests_access,
                    lambda name: self.async_requests(name, list(_ASYNC_STATES)),
                ),
                "Modelhost.GetLoadCurves": console.Read(
                    "JobName", self._load_curves_access, self._load_curves
                ),
            },
        )
        # The embedded buckets' S3 API, on this port, while no other S3 is configured.
        self.s3: s3api.RcloneS3 | None = None
        self.s3_proxy: s3api.S3Proxy | None = None
        if not self.objects.uses_s3:
            rclone = s3api.RcloneS3(
                settings.objects_dir, settings.access_keys, settings.logs_dir / "s3.log"
            )
            self.s3 = rclone
            if isinstance(self.objects, FsspecObjectStore):
                self.objects.on_local_write(rclone.written)
            self.s3_proxy = s3api.S3Proxy(
                rclone.url,
                settings.access_keys,
                settings.region,
                settings.policies,
                lambda: rclone.wait_ready(_S3_START_WAIT_S),
                self.objects.record_content_type
                if isinstance(self.objects, FsspecObjectStore)
                else None,
            )

    def _notify(self) -> None:
        """Desired state changed: wake every controller (each ignores what is not its own)."""
        self.controller.notify()
        self.transforms.notify()
        self.schedules.notify()
        self.recommender.notify()

    async def startup(self) -> None:
        self._controller_tasks = [
            asyncio.create_task(self.controller.run(), name="endpoints"),
            asyncio.create_task(self.async_controller.run(), name="async-inference"),
            asyncio.create_task(self.transforms.run(), name="transforms"),
            asyncio.create_task(self.schedules.run(), name="schedules"),
            asyncio.create_task(self.recommender.run(), name="recommender"),
            asyncio.create_task(self.autoscaler.run(), name="autoscaling"),
            asyncio.create_task(self.ownership.run(), name="leases"),
            asyncio.create_task(self.registry.run(), name="instance-registry"),
            *([asyncio.create_task(self.s3.run(), name="s3")] if self.s3 else []),
            asyncio.create_task(
                self.guard.watch(self.settings.store_check_interval_s), name="store-check"
            ),
        ]
        if self.recorder is not None:
            self._controller_tasks.append(
                asyncio.create_task(self.recorder.run(), name="metrics-history")
            )
        if self.settings.backup_interval_s > 0:
            self._controller_tasks.append(
                asyncio.create_task(
                    self.guard.back_up(
                        self.settings.backup_dir,
                        self.settings.backup_interval_s,
                        self.settings.backup_keep,
                    ),
                    name="backups",
                )
            )

    async def shutdown(self) -> None:
        await cancel_all(self._controller_tasks)
        await self.recommender.shutdown()
        await self.async_controller.shutdown()
        await self.transforms.shutdown()
        await self.controller.shutdown()
        await self.ownership.shutdown()
        if self.s3 is not None:
            await self.s3.stop()
        if self.s3_proxy is not None:
            await self.s3_proxy.close()
        if self.recorder is not None:
            await self.recorder.shutdown()
        if self.history is not None:
            self.history.close()
        self.router.close()
        self.queue.close()
        self.store.close()
        self.guard.release()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if header_limit.too_large(scope["headers"]):
            await _refuse_large_headers(send, path)
            return
        # S3 and STS share the port, told apart by the service their signature names (a
        # control-plane call, with its X-Amz-Target, is never S3's: scoped to `s3`, the
        # control plane refuses it for its scope).
        signed_for = s3api.signed_service(scope)
        if (
            signed_for == "s3"
            and self.s3_proxy is not None
            and not any(name == b"x-amz-target" for name, _ in scope["headers"])
        ):
            await self.s3_proxy(scope, receive, send)
        elif signed_for == "sts" and method == "POST" and path == "/":
            await self._sts(scope, receive, send)
        elif method == "POST" and path.startswith("/endpoints/") and path.endswith(_INVOCATIONS):
            await self._invoke(scope, receive, send, path[len("/endpoints/") : -len(_INVOCATIONS)])
        elif (
            method == "POST"
            and path.startswith("/endpoints/")
            and path.endswith(_STREAM_INVOCATIONS)
        ):
            await self._invoke(
                scope,
                receive,
                send,
                path[len("/endpoints/") : -len(_STREAM_INVOCATIONS)],
                stream=True,
            )
        elif (
            method == "POST"
            and path.startswith("/endpoints/")
            and path.endswith(_ASYNC_INVOCATIONS)
        ):
            await self._invoke_async(
                scope, receive, send, path[len("/endpoints/") : -len(_ASYNC_INVOCATIONS)]
            )
        elif method == "GET" and path.startswith("/endpoints/") and path.endswith(_ASYNC_REQUESTS):
            await self._async_requests(
                scope, receive, send, path[len("/endpoints/") : -len(_ASYNC_REQUESTS)]
            )
        elif method == "POST" and path == "/":
            await self._control(scope, receive, send)
        elif method == "POST" and path.startswith(api.rpcv2_cbor.PREFIX):
            await self._control(scope, receive, send, cbor=True)
        elif method in ("GET", "HEAD") and path == "/ping":
            # Healthy only while the store is readable, as last seen: no I/O per call.
            healthy = self.guard.healthy
            await _respond(
                send,
                200 if healthy else 503,
                b"" if healthy else self.guard.damage().encode(),
                [(b"content-type", b"text/plain")],
            )
        elif method in ("GET", "HEAD") and path == "/metrics":
            try:
                if not auth.has_bearer_token(dict(scope["headers"]), self.settings.metrics_token):
                    await self._authenticate(
                        scope, receive, 0, lambda _: access.Access("modelhost:GetMetrics", ["*"])
                    )
            except SageMakerError as error:
                await _respond_error(send, error)
                return
            await _respond(
                send,
                200,
                generate_latest(metrics.REGISTRY),
                [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            )
        elif method == "GET" and path.startswith(_CURVES) and path.endswith("/load-curves"):
            job = path[len(_CURVES) : -len("/load-curves")]
            try:
                await self._authenticate(scope, receive, 0, lambda _: self._load_curves_access(job))
            except SageMakerError as error:
                await _respond_error(send, error)
                return
            curves = await self.recommender.load_curves(job)
            if curves is None:
                await _respond_error(send, UnknownOperation(f"No job at {path}"), 404)
            else:
                await _respond(
                    send, 200, orjson.dumps(curves), [(b"content-type", b"application/json")]
                )
        elif path == console.PREFIX or path.startswith(console.PREFIX + "/"):
            await self.console(scope, receive, send)
        elif signed_for is None and self.s3_proxy is not None:
            # Unsigned and none of the server's own: an anonymous S3 request.
            await self.s3_proxy(scope, receive, send)
        else:
            await _respond_error(send, UnknownOperation(f"No route for {method} {path}"), 404)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _control(self, scope: Scope, receive: Any, send: Any, cbor: bool = False) -> None:
        """A control-plane call: JSON 1.1 on `/`, or with `cbor` the RPC v2 CBOR protocol
        (CloudWatch)."""
        headers = dict(scope["headers"])
        if cbor:
            service, _, operation = scope["path"][len(api.rpcv2_cbor.PREFIX) :].partition(
                "/operation/"
            )
            target = f"{service}.{operation}"
        else:
            target = headers.get(b"x-amz-target", b"").decode("latin-1")
        try:
            gzipped = api.compression.compressed(headers)

            def inflated(body: bytes) -> bytes:
                return api.compression.inflate(body, _MAX_CONTROL_BODY) if gzipped else body

            body = await self._authenticate(
                scope,
                receive,
                _MAX_CONTROL_BODY,
                lambda body: access.control(target, _decoded(inflated(body), cbor), self.arns),
                lambda: RequestTooLarge(
                    f"Request body exceeds {_MAX_CONTROL_BODY // 1024} KiB; SageMaker API "
                    "requests are small JSON documents."
                ),
                access.signing_service(target),
            )
            body = inflated(body)
        except SageMakerError as error:
            await _respond_error(send, error)
            return
        if cbor:
            status, payload, extra = await asyncio.to_thread(
                api.rpcv2_cbor.handle, self.context, scope["path"], body
            )
            await _respond(
                send, status, payload, [*extra, (b"x-amzn-requestid", str(uuid.uuid4()).encode())]
            )
            return
        # In a thread: validating a large request must not hold up predictions.
        status, payload = await asyncio.to_thread(api.handle, self.context, target, body)
        await _respond(
            send,
            status,
            payload,
            [
                (b"content-type", _JSON_11),
                (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
            ],
        )

    async def _sts(self, scope: Scope, receive: Any, send: Any) -> None:
        """STS (GetCallerIdentity), which needs no permission but, with access keys
        configured, a valid signature."""
        digest = hashlib.sha256() if self.settings.access_keys else None
        try:
            body = await self._read_body(receive, _MAX_CONTROL_BODY, digest)
            if body is None:
                raise RequestTooLarge("STS requests are small forms.")
            key = _credential_key(scope) if digest is None else self._signer(scope, digest, "sts")
        except SageMakerError as error:
            await _respond_error(send, error)
            return
        status, payload = sts.handle(body, key, self.settings.account_id)
        await _respond(
            send,
            status,
            payload,
            [(b"content-type", b"text/xml"), (b"x-amzn-requestid", str(uuid.uuid4()).encode())],
        )

    async def _invoke(
        self, scope: Scope, receive: Any, send: Any, name: str, stream: bool = False
    ) -> None:
        """InvokeEndpointWithResponseStream (with `stream`: the same request, answered as
        an event stream of the model's parts), or an InvokeEndpoint that
        modelhost.runtime.protocol left to ASGI."""
        started = time.perf_counter()
        headers = dict(scope["headers"])
        try:
            self.invoker.check_declared_length(headers)
            body = await self._read_body(receive, self.settings.max_payload_bytes)
            if body is None:
                raise self.invoker.too_large()
            raw_path = scope.get("raw_path") or scope["path"].encode()
            self._authorize_invocation(name, raw_path, scope["query_string"], headers, body, stream)
            if stream:
                await stream_invocation(self.invoker, name, body, headers, started, receive, send)
                return
            answer = await self.invoker.invoke(name, body, headers, started)
        except SageMakerError as error:
            await _respond_error(send, error)
            return
        await _respond(send, 200, answer.body, response_headers(answer))

    # --- InvokeEndpoint for modelhost.runtime.protocol (its InvocationApp)

    @property
    def max_payload_bytes(self) -> int:
        return self.settings.max_payload_bytes

    @property
    def body_timeout_s(self) -> float:
        return self.settings.body_timeout_s

    def takes_invocation(self, headers: list[tuple[bytes, bytes]], query: bytes) -> bool:
        """Whether `__call__` would route this InvokeEndpoint request to `_invoke`: an
        S3-signed one without X-Amz-Target goes to the S3 API."""
        signed_for = s3api.signed_service({"headers": headers, "query_string": query})
        return (
            signed_for != "s3"
            or self.s3_proxy is None
            or any(name == b"x-amz-target" for name, _ in headers)
        )

    async def invocation_reply(
        self,
        name: str,
        raw_path: bytes,
        query: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        started: float,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """InvokeEndpoint's answer to a request read whole: status, headers (without
        Content-Length) and body."""
        try:
            self._authorize_invocation(name, raw_path, query, headers, body, False)
            answer = await self.invoker.invoke(name, body, headers, started)
        except SageMakerError as error:
            return self.error_reply(error)
        return 200, response_headers(answer), answer.body

    def too_large_reply(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return self.error_reply(self.invoker.too_large())

    def error_reply(self, error: SageMakerError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return _error_reply(error)

    def _authorize_invocation(
        self,
        name: str,
        raw_path: bytes,
        query: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        stream: bool,
    ) -> None:
        """With access keys configured, unless it carries the server's own token: that
        one of them signed this invocation, body included, and that its policy allows
        it."""
        if not self.settings.access_keys or auth.is_internal(headers, self.settings.internal_token):
            return
        key = self._check_signature(
            "POST", raw_path, query, headers, hashlib.sha256(body).hexdigest(), access.SAGEMAKER
        )
        if self.settings.policies is not None:
            action = "InvokeEndpointWithResponseStream" if stream else "InvokeEndpoint"
            asked = access.endpoint(f"sagemaker:{action}", name, self.arns)
            self.settings.policies.authorize(key, asked.action, asked.resources)

    async def _invoke_async(self, scope: Scope, receive: Any, send: Any, name: str) -> None:
        """InvokeEndpointAsync: 202 with where the result will appear."""
        headers = dict(scope["headers"])
        try:
            await self._authenticate(
                scope,
                receive,
                _MAX_CONTROL_BODY,
                lambda _: access.endpoint("sagemaker:InvokeEndpointAsync", name, self.arns),
                lambda: RequestTooLarge(
                    "InvokeEndpointAsync takes its input from "
                    "InputLocation, not from the request body."
                ),
            )
            answer, extra = await self.accepter.accept(name, headers)
        except SageMakerError as error:
            await _respond_error(send, error)
            return
        await _respond(
            send, 202, orjson.dumps(answer), [(b"content-type", b"application/json"), *extra]
        )

    async def _async_requests(self, scope: Scope, receive: Any, send: Any, name: str) -> None:
        """The backlog, in-flight and failed requests of an endpoint (for `modelhost
        endpoints async-requests`); `?state=` picks one state."""
        try:
            await self._authenticate(scope, receive, 0, lambda _: self._async_requests_access(name))
            query = parse_qs(scope["query_string"].decode("latin-1"))
            answer = await self.async_requests(name, query.get("state", list(_ASYNC_STATES)))
        except SageMakerError as error:
            await _respond_error(send, error)
            return
        await _respond(send, 200, orjson.dumps(answer), [(b"content-type", b"application/json")])

    async def async_requests(self, name: str, states: list[str]) -> dict[str, Any]:
        """An endpoint's asynchronous requests in `states`, with the counts of each state
        (the answer of `/endpoints/{name}/async-requests` and of the console's)."""
        if any(state not in STATES for state in states):
            raise InvocationValidationError(f"state must be one of {', '.join(STATES)}.")
        record = await LoopStore(self.store).get("endpoint", name)
        answer = await self.queue.call(_async_requests, self.queue.queue, name, states)
        if record is None and not answer["Counts"]["queued"] + answer["Counts"]["running"]:
            raise InvocationValidationError(f"Endpoint {name} not found.")
        return answer

    def _async_requests_access(self, name: str) -> access.Access:
        return access.endpoint("modelhost:ListAsyncRequests", name, self.arns)

    def _load_curves_access(self, job: str) -> access.Access:
        return access.Access(
            "modelhost:GetLoadCurves", [self.arns.sagemaker("inference-recommendations-job", job)]
        )

    async def _load_curves(self, job: str) -> dict[str, Any]:
        """Every traffic step of a recommendation job's candidates (for the console)."""
        curves = await self.recommender.load_curves(job)
        if curves is None:
            raise ResourceNotFound(f"Could not find inference recommendations job '{job}'.")
        return curves

    async def _read_body(self, receive: Any, limit: int, digest: Any = None) -> bytes | None:
        return await _read_body(receive, limit, self.settings.body_timeout_s, digest)

    async def _authenticate(
        self,
        scope: Scope,
        receive: Any,
        limit: int,
        wanted: Callable[[bytes], access.Access],
        too_large: Callable[[], SageMakerError] = lambda: RequestTooLarge(
            "This request takes no body."
        ),
        service: str = access.SAGEMAKER,
    ) -> bytes:
        """Read the body (`too_large()` is raised past `limit`) and, with access keys
        configured, check that one of them signed this request, body included (hashed as
        it arrives), for `service`, and that its policy allows what `wanted(body)` says
        the request does."""
        digest = hashlib.sha256() if self.settings.access_keys else None
        body = await self._read_body(receive, limit, digest)
        if body is None:
            raise too_large()
        if digest is None:
            return body
        key = self._signer(scope, digest, service)
        if self.settings.policies is not None:
            asked = wanted(body)
            self.settings.policies.authorize(key, asked.action, asked.resources)
        return body

    def _signer(self, scope: Scope, digest: Any, service: str) -> str:
        """The access key whose SigV4 signature of this request (its body hashed into
        `digest` as it arrived) checks out for `service`; auth.verify raises otherwise."""
        return self._check_signature(
            scope["method"],
            scope.get("raw_path") or scope["path"].encode(),
            scope["query_string"],
            dict(scope["headers"]),
            digest.hexdigest(),
            service,
        )

    def _check_signature(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: dict[bytes, bytes],
        payload_sha256: str,
        service: str,
    ) -> str:
        return auth.verify(
            self.settings.access_keys,
            auth.SignedRequest(method, raw_path, query, headers, payload_sha256),
            service,
            self.settings.region,
        )


def _async_requests(queue: JobQueue, name: str, states: list[str]) -> dict[str, Any]:
    """Blocking queue calls: the answer of `/endpoints/{name}/async-requests`."""
    counts = queue.counts(name)
    return {
        "EndpointName": name,
        "Counts": {state: getattr(counts, state) for state in STATES},
        "Requests": [job.to_dict() for state in states for job in queue.jobs(name, state)],
    }


def _credential_key(scope: Scope) -> str:
    """The access key a SigV4 Authorization header names (unchecked)."""
    header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    return header.partition("Credential=")[2].partition("/")[0]


def _decoded(body: bytes, cbor: bool) -> Any:
    """A control-plane body's parameters for finding the names it carries; None when it
    does not decode (the operation then refuses it, and the policy sees `*`)."""
    try:
        if not body.strip():
            return {}
        return cbor2.loads(body) if cbor else orjson.loads(body)
    except (ValueError, TypeError, cbor2.CBORDecodeError):
        return None


async def _respond_error(send: Any, error: SageMakerError, status: int | None = None) -> None:
    status, headers, body = _error_reply(error, status)
    await _respond(send, status, body, headers)


def _error_reply(
    error: SageMakerError, status: int | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An error as both AWS protocols carry it: code in the body and in x-amzn-ErrorType."""
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", error.code.encode()),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
    ]
    if isinstance(error, RequestTimeout):  # the rest of that body is not worth waiting for
        headers.append((b"connection", b"close"))
    return status or error.status, headers, orjson.dumps(error.body())


async def _refuse_large_headers(send: Any, path: str) -> None:
    """431 in the protocol of the route asked for: the runtime's ValidationError, the
    control plane's ValidationException, or RPC v2 CBOR's error map."""
    if path.startswith("/endpoints/"):
        await _respond_error(send, InvocationValidationError(header_limit.message()), 431)
    elif path.startswith(api.rpcv2_cbor.PREFIX):
        status, body, headers = api.rpcv2_cbor.error_answer(
            ValidationError(header_limit.message()), 431
        )
        await _respond(send, status, body, headers)
    else:
        await _respond_error(send, ValidationError(header_limit.message()), 431)


async def _read_body(
    receive: Any, limit: int, timeout_s: float, digest: Any = None
) -> bytes | None:
    """The whole request body, or None once it grows past `limit`; `digest` (a hashlib
    object) is fed each chunk as it arrives. RequestTimeout when no part of it arrives for
    `timeout_s`: a stalled client must not hold its connection. (`asyncio.timeout`
    rescheduled per part: no task per request on the hot path.)"""
    chunks = []
    size = 0
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        await _drain(message, receive, deadline, timeout_s)
                        return None
                    if digest is not None:
                        digest.update(chunk)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
                deadline.reschedule(loop.time() + timeout_s)
    except TimeoutError:
        raise RequestTimeout(
            f"No part of the request body arrived for {timeout_s:g} seconds."
        ) from None
    return b"".join(chunks)


async def _drain(message: Any, receive: Any, deadline: asyncio.Timeout, timeout_s: float) -> None:
    """Read and drop what is left of a refused body, up to `DRAIN_BYTES`. A connection
    closed while the client is still sending is reset, and a reset can discard the answer
    before the client reads it: so the client finishes sending a slightly oversized body
    and sees its 413, while one far over the limit is still cut off early."""
    loop = asyncio.get_running_loop()
    drained = 0
    while message.get("more_body", False) and drained < DRAIN_BYTES:
        deadline.reschedule(loop.time() + timeout_s)
        message = await receive()
        drained += len(message.get("body", b""))


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
