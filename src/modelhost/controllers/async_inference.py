"""Asynchronous inference workers: drain the durable queue through the router.

For each endpoint with waiting requests, the controller leases as many as its instances
may run at once (instances x MaxConcurrentInvocationsPerInstance) and runs each one:
stream the input from the object store to an instance, keep its answer (in memory, or
in a temporary file when large) and write it to the output object (atomically: it
appears whole or not at all), record the outcome in the queue, notify. A failed attempt
waits out an exponential backoff with jitter before the next (the job is invisible in
the queue meanwhile); a failed write of an outcome is tried again on the same schedule
with the answer kept, so a short outage of the object store does not run the model
again. Delivery is at least once, so a request is idempotent by construction: one whose
output or failure object already exists (its last worker died after writing) is only
recorded, never run into a second, different result.

An endpoint scaled to zero with requests waiting gets one instance through the same path
as UpdateEndpointWeightsAndCapacities; scaling back to zero is an autoscaling policy's job.

With several servers on one state store and one queue (Redis), an endpoint's requests are
dispatched by the server that holds the endpoint's lease, the one running its instances;
the dispatcher's own lease covers what belongs to no running endpoint (failing the requests
of a deleted one, expiring and pruning). A request a dead server was working on goes back
to the queue when its queue lease runs out (MODELHOST_ASYNC_LEASE), and the endpoint's new
owner runs it; an outcome already written is only recorded, never run again.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from modelhost import api, metrics
from modelhost.config import Settings
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.errors import ModelError, SageMakerError
from modelhost.instances import InstanceUnreachable
from modelhost.queue import Job, LoopQueue, backoff_s
from modelhost.router import Deployment, Invocation, Router
from modelhost.runtime import Notifier, notification, object_io
from modelhost.storage import LoopStore, ObjectStore, Ownership, StateStore, lease

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY_PER_INSTANCE = 4
_CHUNK = 1024 * 1024
_PRUNE_BATCH = 1000  # per measurement, so pruning a long backlog never holds the queue
_EXPIRED = "The request expired: its RequestTTLSeconds passed before an instance could process it."


class AsyncInferenceController(ReconcileLoop):
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        objects: ObjectStore,
        queue: LoopQueue,
        router: Router,
        context: api.Context,
        notifier: Notifier,
        ownership: Ownership,
    ) -> None:
        super().__init__("async inference dispatch", settings.async_poll_s)
        self.settings = settings
        # Awaited store calls: in a thread unless the store is a local file.
        self.store = LoopStore(store)
        self.ownership = ownership
        self.objects = objects
        # Awaited queue calls: in the queue's threads unless it is a local file.
        self.queue = queue
        self.router = router
        self.context = context
        self.notifier = notifier
        self._running: dict[str, set[asyncio.Task[None]]] = {}
        self._per_instance: dict[str, int] = {}  # as last read from the endpoint
        self._measured_at = 0.0

    async def prepare(self) -> None:
        recovered = await self.queue.recover()
        if recovered:
            log.info(
                "async inference: %d request(s) in flight at the last stop go back to the queue",
                recovered,
            )

    #: The lease of the work no endpoint's owner does: a deleted endpoint's requests,
    #: expiry and pruning.
    LEASE = lease("async", "*")

    async def step(self) -> None:
        if not self.ownership.owns(self.LEASE):  # renewed by Ownership.run once held
            await self.ownership.claim([self.LEASE])
        for name in {*await self.queue.endpoints(), *self._running}:
            await self._dispatch(name)
        if time.monotonic() - self._measured_at >= self.settings.async_poll_s:
            await self._measure()

    async def shutdown(self) -> None:
        await cancel_all([t for running in self._running.values() for t in running])
        await self.notifier.close()

    # --- dispatch --------------------------------------------------------------------

    async def _dispatch(self, name: str) -> None:
        running = self._running.get(name, set())
        if not self.ownership.owns(lease("endpoint", name)) and not self.ownership.owns(self.LEASE):
            return  # another server runs the endpoint and dispatches its requests
        deployment = self.router.deployments.get(name)
        replicas = deployment.serving() if deployment else 0
        if replicas and len(running) >= replicas:
            # At least one slot per instance is taken: only the per-instance limit can
            # leave room, and reading the endpoint costs more than that check.
            limit = self._per_instance.get(name, DEFAULT_CONCURRENCY_PER_INSTANCE)
            if len(running) >= replicas * limit:
                return
        record = await self.store.get("endpoint", name)
        if record is None or record["EndpointStatus"] == "Deleting":
            if not self.ownership.owns(self.LEASE):
                return
            # The endpoint is gone: its requests can only fail.
            for job in await self.queue.lease(name, 100, self.settings.async_lease_s):
                self._spawn(name, running, self._fail(job, f"Endpoint {name} was deleted."))
            return
        if not self.ownership.owns(lease("endpoint", name)):
            return  # the dispatcher's lease, but another server runs the endpoint
        if replicas == 0:
            await self.store.call(self._scale_from_zero, name, record)
            return
        config = record["_desired"]["config"].get("AsyncInferenceConfig") or {}
        limit = self._per_instance[name] = config.get("ClientConfig", {}).get(
            "MaxConcurrentInvocationsPerInstance", DEFAULT_CONCURRENCY_PER_INSTANCE
        )
        assert deployment is not None
        for job in await self.queue.lease(
            name, replicas * limit - len(running), self.settings.async_lease_s
        ):
            self._spawn(name, running, self._work(deployment, job))

    def _spawn(self, name: str, running: set[asyncio.Task[None]], work: Any) -> None:
        task = asyncio.create_task(work)
        running.add(task)
        self._running[name] = running

        def done(finished: asyncio.Task[None]) -> None:
            running.discard(finished)
            if not running and self._running.get(name) is running:
                del self._running[name]
            self._wake.set()

        task.add_done_callback(done)

    def _scale_from_zero(self, name: str, record: dict[str, Any]) -> None:
        """Blocking store calls: run off the loop."""
        capacity = record["_desired"]["capacity"]
        if record["EndpointStatus"] != "InService" or any(
            c["count"] > 0 for c in capacity.values()
        ):
            return  # instances are on their way, or an operation is in flight
        variant = record["_desired"]["config"]["ProductionVariants"][0]["VariantName"]
        log.info("endpoint %s: requests wait and no instance runs; starting one", name)
        try:
            api.update_endpoint_weights_and_capacities(
                self.context,
                {
                    "EndpointName": name,
                    "DesiredWeightsAndCapacities": [
                        {"VariantName": variant, "DesiredInstanceCount": 1}
                    ],
                },
            )
        except SageMakerError as error:
            log.warning("endpoint %s: cannot scale from zero: %s", name, error.message)

    async def _measure(self) -> None:
        """Backlog metrics, requests whose TTL ran out while they waited (failed here so
        that they end even when no instance can take them), and finished requests past
        their retention (deleted, a batch at a time, so the queue does not grow forever)."""
        self._measured_at = time.monotonic()
        if self.ownership.owns(self.LEASE):
            await self.queue.prune(time.time() - self.settings.async_retention_s, _PRUNE_BATCH)
            for name, jobs in (await self.queue.call(self._expired)).items():
                running = self._running.get(name, set())
                for job in jobs:
                    self._spawn(name, running, self._fail(job, _EXPIRED))
        names = [
            record["EndpointName"]
            for record in await self.store.list("endpoint")
            if record["_desired"]["config"].get("AsyncInferenceConfig")
        ]
        for name, backlog in (await self.queue.call(self._backlogs, names)).items():
            deployment = self.router.deployments.get(name)
            instances = deployment.serving() if deployment else 0
            metrics.ASYNC_BACKLOG.labels(name).set(backlog)
            metrics.ASYNC_BACKLOG_PER_INSTANCE.labels(name).set(backlog / max(instances, 1))
            metrics.ASYNC_BACKLOG_WITHOUT_CAPACITY.labels(name).set(
                1 if backlog and not instances else 0
            )

    def _expired(self) -> dict[str, list[Job]]:
        """Blocking queue calls, one pass: each endpoint's requests whose TTL ran out,
        leased to be failed."""
        queue = self.queue.queue
        return {
            name: queue.expired(name, 100, self.settings.async_lease_s)
            for name in queue.endpoints()
        }

    def _backlogs(self, names: list[str]) -> dict[str, int]:
        """Blocking queue calls, one pass: each endpoint's backlog."""
        return {name: self.queue.queue.counts(name).backlog for name in names}

    # --- one request -----------------------------------------------------------------

    async def _work(self, deployment: Deployment, job: Job) -> None:
        renewing = asyncio.create_task(self._renew(job, asyncio.current_task()))
        try:
            await self._attempt(deployment, job)
        except asyncio.CancelledError:
            if renewing.done():  # the lease was lost: another worker owns the request
                log.warning("request %s: lease lost; left to its new owner", job.id)
                return
            raise
        finally:
            renewing.cancel()

    async def _renew(self, job: Job, work: asyncio.Task[Any] | None) -> None:
        while True:
            await asyncio.sleep(self.settings.async_lease_s / 3)
            if not await self.queue.renew(job, self.settings.async_lease_s):
                if work is not None:
                    work.cancel()
                return

    async def _attempt(self, deployment: Deployment, job: Job) -> None:
        if time.time() > job.expires_at:
            await self._fail(job, _EXPIRED)
            return
        try:
            found, source = await object_io(self.objects, self._open_input, job)
        except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
            await self._fail(job, f"Cannot read InputLocation {job.input_location}: {exc}")
            return
        except OSError as exc:
            await self._retry(job, f"Cannot read InputLocation {job.input_location}: {exc}")
            return
        if source is None:  # a previous attempt finished the work: only record it
            await self._finish(job, found is None, found)
            return
        assert source is not None
        answer = _Answer()
        try:
            try:
                result = await self.router.stream(
                    deployment,
                    Invocation(b"", job.content_type, job.accept, job.custom_attributes, None),
                    source.chunks(),
                    source.size,
                    answer.write,
                    job.timeout_s,
                )
            finally:
                await source.close()
            series = metrics.for_variant(job.endpoint, result.variant)
            series.answered(result.model_seconds, result.batch)
            # The model has answered: from here on only the write is ever tried again.
            problem = await self._store(job, job.output_location, answer.store, answer.small)
        except ModelError as error:
            await self._fail(job, error.message)
            return
        except (InstanceUnreachable, SageMakerError, OSError) as exc:
            await self._retry(job, str(exc) or type(exc).__name__)
            return
        finally:
            answer.close()
        if isinstance(problem, ValueError):
            await self._fail(job, f"Cannot write the output {job.output_location}: {problem}")
        elif problem is not None:
            await self._retry(job, f"Cannot write the output {job.output_location}: {problem}")
        else:
            await self._finish(job, True, None)

    def _open_input(self, job: Job) -> tuple[str | None, _Input | None]:
        """Whether a previous attempt finished the request (then no input: the error
        message if it failed, None if it succeeded), else the input opened with its first
        chunk read; a small input is then whole, with no further I/O."""
        if job.attempts > 1:  # only an earlier attempt can have written an outcome
            if self.objects.is_file(job.output_location):
                return None, None
            if self.objects.is_file(job.failure_location):
                failure = self.objects.get_bytes(job.failure_location)
                return failure.decode(errors="replace"), None
        file = self.objects.open(job.input_location, "rb")
        try:
            first = file.read(_CHUNK)
            size = len(first) if len(first) < _CHUNK else self.objects.size(job.input_location)
        except BaseException:
            file.close()
            raise
        return None, _Input(file, first, size)

    def _backoff(self, attempt: int) -> float:
        return backoff_s(attempt, self.settings.async_retry_base_s, self.settings.async_retry_max_s)

    async def _store(
        self, job: Job, uri: str, write: Callable[[ObjectStore, str], None], small: bool
    ) -> Exception | None:
        """Write an outcome object, trying a failed write again with backoff while the
        lease is renewed: the outcome is already known, so a short outage of the object
        store must cost neither the request nor another run of the model. The error of the
        last try, or None once written; a name the store refuses (ValueError) is final."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if small:
                    await object_io(self.objects, write, self.objects, uri)
                else:
                    await asyncio.to_thread(write, self.objects, uri)
                return None
            except ValueError as exc:
                return exc
            except OSError as exc:
                if attempt >= self.settings.async_max_attempts:
                    return exc
                delay = self._backoff(attempt)
                log.warning(
                    "request %s: cannot write %s (%s); the write is tried again in "
                    "%.2f s with the answer kept",
                    job.id,
                    uri,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _retry(self, job: Job, error: str) -> None:
        if job.attempts >= self.settings.async_max_attempts:
            await self._fail(job, f"The request failed after {job.attempts} attempts: {error}")
            return
        await self._requeue(job, error)

    async def _requeue(self, job: Job, error: str) -> None:
        """Back to the queue, out of reach until its backoff is over; the dispatcher is
        woken then, so the next attempt does not wait for a poll as well."""
        delay = self._backoff(job.attempts)
        log.warning(
            "request %s (attempt %d) will be retried: %s (next attempt in %.2f s)",
            job.id,
            job.attempts,
            error,
            delay,
        )
        if await self.queue.retry(job, error, delay):
            asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _fail(self, job: Job, error: str) -> None:
        data = error.encode()

        def write(objects: ObjectStore, uri: str) -> None:
            objects.put_bytes(uri, data)

        problem = await self._store(job, job.failure_location, write, small=True)
        if problem is not None:
            log.error(
                "request %s: cannot write the failure object %s: %s",
                job.id,
                job.failure_location,
                problem,
            )
            if isinstance(problem, OSError) and job.attempts < self.settings.async_max_attempts:
                # The object store is unwell: try the whole request again later rather
                # than end it with no object to show for it.
                await self._requeue(job, f"{error} (and the failure object: {problem})")
                return
        metrics.INVOCATION_4XX.labels(job.endpoint, "-").inc()
        await self._finish(job, False, error)

    async def _finish(self, job: Job, succeeded: bool, error: str | None) -> None:
        if not await self.queue.finish(job, succeeded, error):
            return  # lease lost: the new owner records (and notifies) the same outcome
        outcome = "Success" if succeeded else "Error"
        for target in (
            job.notification.get(f"{outcome}Topic"),
            job.notification.get(f"{outcome}Webhook"),
        ):
            if target:
                self.notifier.send(
                    target, notification(job, self.settings.region, succeeded, error)
                )


class _Input:
    """The input object, read in chunks on a worker thread."""

    def __init__(self, file: IO[bytes], first: bytes, size: int) -> None:
        self.file = file
        self.first = first
        self.size = size

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
            if len(self.first) == self.size:
                return  # read whole already
            self.first = b""
        while chunk := await asyncio.to_thread(self.file.read, _CHUNK):
            yield chunk

    async def close(self) -> None:
        self.file.close()  # a read-only file: nothing to flush


class _Answer:
    """The model's answer as it streams in, in memory up to one chunk and in a temporary
    file beyond, kept until it is in the output object: a failed write is tried again
    from here, never by running the model again. The output object is written whole on
    success (atomically: it appears whole or not at all), never half on failure."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=_CHUNK)  # noqa: SIM115
        self.size = 0

    @property
    def small(self) -> bool:
        """Small enough to be in memory: written in one go, with no thread hop on disk."""
        return self.size <= _CHUNK

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.small:
            self.file.write(data)
        else:  # to (or on) disk
            await asyncio.to_thread(self.file.write, data)

    def store(self, objects: ObjectStore, uri: str) -> None:
        self.file.seek(0)
        with objects.open(uri, "wb") as out:
            while chunk := self.file.read(_CHUNK):
                out.write(chunk)

    def close(self) -> None:
        self.file.close()
