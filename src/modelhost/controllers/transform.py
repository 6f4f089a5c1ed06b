"""The transform job controller: runs batch transform jobs from the state store.

A job starts its own instances (the model server of its model, like an endpoint's),
spreads its input objects over them, and streams each object through mini-batches with
at most MaxConcurrentTransforms requests in flight per instance. Output is written in
parts on the server's disk; a part is committed (renamed into place, then its end offset
recorded in the store) once the answers for every batch in it have arrived, and an
object's `<name>.out` is assembled from its parts when the object is done. A restarted
server therefore resumes each unfinished object at its last committed offset: parts past
that offset are dropped, nothing is redone twice or lost. Instances always stop when the
job ends, however it ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from modelhost import metrics
from modelhost.batch import (
    DataProcessing,
    InputError,
    MiniBatch,
    ProcessingError,
    RecordError,
    input_objects,
    mini_batches,
    open_input,
    output_uri,
    skip,
)
from modelhost.config import Settings
from modelhost.controllers.deployment import (
    StartFailed,
    charge,
    instance_spec,
    prepare_model,
    start_all,
)
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.domain import kinds
from modelhost.domain.failures import fit_failure_reason
from modelhost.instances import (
    Instance,
    InstanceBackend,
    InstanceClient,
    InstanceUnreachable,
)
from modelhost.storage import ObjectStore, StateStore

log = logging.getLogger(__name__)

KIND = kinds.TRANSFORM_JOB
_VARIANT = "transform"
# A part is committed after this much input; smaller parts mean less redone work after a
# crash, larger ones fewer store writes.
PART_BYTES = int(os.environ.get("MODELHOST_TRANSFORM_PART_BYTES", 16 * 1024 * 1024))
_DEFAULT_TIMEOUT_S = 600.0  # SageMaker's InvocationsTimeoutInSeconds default
_DEFAULT_RETRIES = 3


class JobFailed(Exception):
    """Ends a job as Failed with this message as FailureReason."""


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message if message.startswith("the model")
                         else f"the model answered {status}: {message}")
        self.status = status


@dataclasses.dataclass
class _Job:
    """What one running job needs at hand."""

    name: str
    record: dict[str, Any]
    processing: DataProcessing
    objects: list[tuple[str, str]]
    headers: list[tuple[bytes, bytes]]
    timeout_s: float
    retries: int
    concurrency: int
    work_dir: Path


class TransformController(ReconcileLoop):
    def __init__(self, settings: Settings, store: StateStore, objects: ObjectStore,
                 backend: InstanceBackend) -> None:
        super().__init__("transform reconcile", settings.health_interval_s)
        self.settings = settings
        self.store = store
        self.objects = objects
        self.backend = backend
        self.client = InstanceClient()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._instances: dict[str, list[Instance]] = {}
        self._counter = itertools.count(1)
        self._metered_at = time.monotonic()

    @property
    def work_root(self) -> Path:
        return self.settings.data_dir / "transform"

    async def step(self) -> None:
        self.reconcile()
        self.meter()

    async def shutdown(self) -> None:
        """Stop running jobs without changing their status: a restarted server resumes
        them from their last committed part."""
        await cancel_all(self._tasks.values())
        self.client.close()

    def reconcile(self) -> None:
        for record in self.store.list(KIND):
            name = record["TransformJobName"]
            status = record["TransformJobStatus"]
            task = self._tasks.get(name)
            if status == "InProgress" and task is None:
                task = asyncio.create_task(self._run(name), name=f"transform:{name}")
                self._tasks[name] = task
                task.add_done_callback(lambda t, n=name: self._tasks.pop(n, None))
            elif status == "Stopping":
                if task is not None:
                    if not task.cancelling():
                        task.cancel()
                else:
                    self._finish(name, "Stopped")

    # --- one job ---------------------------------------------------------------------

    async def _run(self, name: str) -> None:
        record = self.store.get(KIND, name)
        if record is None:
            return
        outcome: tuple[str, str | None] | None = None  # None: the server is shutting down
        try:
            job = await self._prepare(record)
            instances = await self._start_instances(record)
            if not job.concurrency:
                job.concurrency = await self._container_concurrency(instances[0])
            pending: asyncio.Queue[int] = asyncio.Queue()
            done = job.record["_progress"]["objects"]
            for index in range(len(job.objects)):
                if not done[index]["done"]:
                    pending.put_nowait(index)
            await _all_or_none([self._worker(job, i, pending) for i in instances])
            outcome = ("Completed", None)
        except asyncio.CancelledError:
            current = self.store.get(KIND, name)
            if current is not None and current["TransformJobStatus"] == "Stopping":
                outcome = ("Stopped", None)
            raise
        except JobFailed as failure:
            log.warning("transform job %s failed: %s", name, failure)
            outcome = ("Failed", str(failure))
        except Exception as failure:
            log.exception("transform job %s raised", name)
            outcome = ("Failed", f"{type(failure).__name__}: {failure}")
        finally:
            # instances are gone before the status says the job ended
            await self._stop_instances(name)
            if outcome is not None:
                self._finish(name, *outcome)

    async def _prepare(self, record: dict[str, Any]) -> _Job:
        """The job's settings and its input list, read once and kept in the store so a
        resumed job works through the very same objects."""
        name = record["TransformJobName"]
        if "_progress" not in record:
            try:
                found = await asyncio.to_thread(
                    input_objects, self.objects, record["TransformInput"]["DataSource"])
            except InputError as exc:
                raise JobFailed(str(exc)) from None
            progress = {"inputs": found, "objects": [
                {"done": False, "offset": 0, "records": 0, "parts": 0} for _ in found]}

            def start(r: dict[str, Any]) -> dict[str, Any]:
                r["_progress"] = progress
                r["TransformProgress"] = _summary(progress)
                return r

            record = self.store.modify(KIND, name, start) or record
        transform_input = record["TransformInput"]
        output = record["TransformOutput"]
        headers = []
        if content_type := transform_input.get("ContentType"):
            headers.append((b"Content-Type", content_type.encode("latin-1")))
        if accept := output.get("Accept"):
            headers.append((b"Accept", accept.encode("latin-1")))
        client_config = record.get("ModelClientConfig", {})
        return _Job(
            name=name,
            record=record,
            processing=DataProcessing(record["DataProcessing"],
                                      transform_input.get("ContentType"), accept),
            objects=[tuple(x) for x in record["_progress"]["inputs"]],  # type: ignore[misc]
            headers=headers,
            timeout_s=float(client_config.get("InvocationsTimeoutInSeconds",
                                              _DEFAULT_TIMEOUT_S)),
            retries=int(client_config.get("InvocationsMaxRetries", _DEFAULT_RETRIES)),
            concurrency=int(record.get("MaxConcurrentTransforms", 0)),
            work_dir=self.work_root / name,
        )

    async def _start_instances(self, record: dict[str, Any]) -> list[Instance]:
        name = record["TransformJobName"]
        model = record["_model"]
        resources = record["TransformResources"]
        try:
            model_dir = await prepare_model(self.settings, self.objects, model)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise JobFailed(f"Could not prepare model {model['ModelName']}: {exc}") from None
        environment = {
            **record.get("Environment", {}),
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(record["MaxPayloadInMB"]),
            "SAGEMAKER_BATCH_STRATEGY": record["BatchStrategy"].upper(),
        }
        if "MaxConcurrentTransforms" in record:
            environment["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(
                record["MaxConcurrentTransforms"])
        variant = {"VariantName": _VARIANT, "InstanceType": resources["InstanceType"]}
        specs = []
        for _ in range(resources["InstanceCount"]):
            spec = instance_spec(self.settings, name, variant, model, model_dir,
                                 next(self._counter))
            specs.append(dataclasses.replace(
                spec, environment={**spec.environment, **environment}))
        started: list[Instance] = []
        self._instances[name] = started
        try:
            instances = await start_all(self.backend, specs,
                                        self.settings.startup_timeout_s, started)
        except StartFailed as exc:
            raise JobFailed(str(exc)) from None
        metrics.INSTANCES.labels(name, _VARIANT).set(len(instances))
        return instances

    async def _container_concurrency(self, instance: Instance) -> int:
        """Without MaxConcurrentTransforms, ask the container (/execution-parameters), as
        SageMaker does; 1 if it does not say."""
        try:
            response = await self.client.request(
                instance.address, b"GET", b"/execution-parameters", [], b"", 5.0)
            value = int(orjson.loads(response.body).get("MaxConcurrentTransforms", 1))
        except (InstanceUnreachable, TimeoutError, orjson.JSONDecodeError, ValueError,
                TypeError, AttributeError):
            return 1
        return max(1, value) if response.status == 200 else 1

    async def _stop_instances(self, name: str) -> None:
        self.meter()
        instances = self._instances.pop(name, [])
        for instance in instances:
            self.client.forget(instance.address)
        await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        metrics.INSTANCES.labels(name, _VARIANT).set(0)

    async def _worker(self, job: _Job, instance: Instance, pending: asyncio.Queue[int]
                      ) -> None:
        while not pending.empty():
            index = pending.get_nowait()
            await self._transform_object(job, instance, index)

    # --- one object ------------------------------------------------------------------

    async def _transform_object(self, job: _Job, instance: Instance, index: int) -> None:
        uri, relative = job.objects[index]
        state = self.store.get(KIND, job.name)["_progress"]["objects"][index]  # type: ignore[index]
        parts_dir = job.work_dir / str(index)
        await asyncio.to_thread(_drop_uncommitted, parts_dir, state["parts"])
        record = job.record
        transform_input = record["TransformInput"]
        max_bytes = (record["MaxPayloadInMB"] or 100) * 1024 * 1024

        def batches() -> Iterator[MiniBatch]:
            with self.objects.open(uri, "rb") as raw:
                stream = open_input(raw, transform_input["CompressionType"])
                skip(stream, state["offset"])
                yield from mini_batches(
                    stream, transform_input["SplitType"], record["BatchStrategy"], max_bytes,
                    first_record=state["records"], offset=state["offset"])

        source = batches()
        try:
            await self._stream(job, instance, index, source, parts_dir, state)
        except RecordError as exc:
            raise JobFailed(f"Object {uri}, record {exc.record + 1}: {exc}") from None
        except FileNotFoundError:
            raise JobFailed(f"Input object {uri} no longer exists.") from None
        except OSError as exc:
            raise JobFailed(f"Could not read input object {uri}: {exc}") from None
        finally:
            await asyncio.to_thread(source.close)
        target = output_uri(record["TransformOutput"]["S3OutputPath"], relative)
        await asyncio.to_thread(self._assemble, parts_dir, state["parts"], target)
        self._commit(job.name, index, done=True)
        await asyncio.to_thread(shutil.rmtree, parts_dir, True)

    async def _stream(self, job: _Job, instance: Instance, index: int,
                      source: Iterator[MiniBatch], parts_dir: Path,
                      state: dict[str, Any]) -> None:
        """Keep `concurrency` requests in flight; write answers in input order."""
        in_flight: deque[tuple[MiniBatch, asyncio.Task[bytes]]] = deque()
        part: IO[bytes] | None = None
        part_start = state["offset"]
        exhausted = False
        last: MiniBatch | None = None
        try:
            while True:
                while not exhausted and len(in_flight) < job.concurrency:
                    batch = await asyncio.to_thread(next, source, None)
                    if batch is None:
                        exhausted = True
                        break
                    task = asyncio.create_task(self._process(job, instance, index, batch))
                    in_flight.append((batch, task))
                if not in_flight:
                    break
                batch, task = in_flight.popleft()
                output = await task
                if part is None:
                    parts_dir.mkdir(parents=True, exist_ok=True)
                    part = (parts_dir / f".part-{state['parts']:06d}").open("wb")
                part.write(output)
                last = batch
                if batch.end_offset - part_start >= PART_BYTES:
                    await self._seal(job.name, index, part, parts_dir, state, batch)
                    part = None
                    part_start = batch.end_offset
            if part is not None and last is not None:
                await self._seal(job.name, index, part, parts_dir, state, last)
                part = None
        finally:
            for _, task in in_flight:
                task.cancel()
            await asyncio.gather(*(t for _, t in in_flight), return_exceptions=True)
            if part is not None:
                part.close()

    async def _seal(self, name: str, index: int, part: IO[bytes], parts_dir: Path,
                    state: dict[str, Any], batch: MiniBatch) -> None:
        """Commit a part: durable under its final name first, then counted in the store."""
        await asyncio.to_thread(_seal, part, parts_dir, state["parts"])
        state.update(self._commit(name, index, offset=batch.end_offset,
                                  records=batch.first_record + batch.records))

    async def _process(self, job: _Job, instance: Instance, index: int, batch: MiniBatch
                       ) -> bytes:
        """One mini-batch through filters, the model and the join: its output bytes."""
        uri = job.objects[index][0]
        processing = job.processing
        try:
            payload, inputs = (processing.request(batch.payload) if processing.active
                               else (batch.payload, []))
        except ProcessingError as exc:
            raise JobFailed(f"Object {uri}, record {batch.first_record + exc.record + 1}: "
                            f"{exc}") from None
        try:
            body, content_type = await self._invoke(job, instance, payload)
        except _Rejected as rejected:
            raise JobFailed(await self._name_rejected(job, instance, uri, batch, rejected)
                            ) from None
        try:
            if processing.active:
                return processing.response(inputs, body, content_type)
        except ProcessingError as exc:
            raise JobFailed(f"Object {uri}, record {batch.first_record + exc.record + 1}: "
                            f"{exc}") from None
        if job.record["TransformOutput"]["AssembleWith"] == "Line" and not body.endswith(
                b"\n"):
            return body + b"\n"
        return body

    async def _invoke(self, job: _Job, instance: Instance, payload: bytes
                      ) -> tuple[bytes, str | None]:
        """POST /invocations with ModelClientConfig's timeout and retries. A 4xx answer is
        the model refusing the input and is not retried; a 5xx one that persists through
        the retries counts as a refusal too."""
        failure = ""
        last_status = 0
        for _ in range(job.retries + 1):
            try:
                response = await self.client.request(
                    instance.address, b"POST", b"/invocations", job.headers, payload,
                    job.timeout_s)
            except TimeoutError:
                failure = f"the model took longer than {job.timeout_s:g} s"
                continue
            except InstanceUnreachable as exc:
                failure = str(exc)
                if not instance.is_alive():
                    raise JobFailed(f"Instance {instance.spec.instance_id} died: "
                                    f"{instance.failure_detail()}") from None
                continue
            message = response.body.decode(errors="replace")[:512]
            if 400 <= response.status < 500:
                raise _Rejected(response.status, message)
            if response.status >= 500:
                failure = f"the model answered {response.status}: {message}"
                last_status = response.status
                continue
            content_type = response.header(b"content-type")
            return response.body, content_type.decode("latin-1") if content_type else None
        if last_status:  # the model itself keeps failing on this input
            raise _Rejected(last_status, f"{failure} ({job.retries + 1} attempts)")
        raise JobFailed(f"Invocation failed after {job.retries + 1} attempts: {failure}")

    async def _name_rejected(self, job: _Job, instance: Instance, uri: str, batch: MiniBatch,
                             rejected: _Rejected) -> str:
        """FailureReason for a refused batch, naming the record the model refuses: line
        records are bisected (half a batch at a time, a few dozen requests at most for
        the largest one) down to the first refused record."""
        first, last = batch.first_record + 1, batch.first_record + batch.records
        lo, hi = 0, batch.records
        if batch.records > 1 and job.record["TransformInput"]["SplitType"] == "Line":
            lines = batch.payload.splitlines(keepends=True)
            hi = len(lines)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                for low, high in ((lo, mid), (mid, hi)):
                    refusal = await self._refusal(job, instance, lines[low:high])
                    if refusal is not None:
                        lo, hi, rejected = low, high, refusal
                        break
                else:
                    break  # each half passes alone: only together are they refused
        where = (f"record {first + lo}" if hi - lo == 1 else
                 f"records {first + lo}-{first + hi - 1}" if hi - lo < batch.records else
                 f"records {first}-{last}")
        return f"Object {uri}, {where}: {rejected}"

    async def _refusal(self, job: _Job, instance: Instance, lines: list[bytes]
                       ) -> _Rejected | None:
        payload = b"".join(lines)
        try:
            if job.processing.active:
                payload = job.processing.request(payload)[0]
            await self._invoke(job, instance, payload)
        except _Rejected as refused:
            return refused
        return None

    # --- progress and output ---------------------------------------------------------

    def _commit(self, name: str, index: int, **changes: Any) -> dict[str, Any]:
        """Record one object's progress; returns its new state."""
        result: dict[str, Any] = {}

        def change(record: dict[str, Any]) -> dict[str, Any]:
            state = record["_progress"]["objects"][index]
            if "offset" in changes:
                state["parts"] += 1
            state.update(changes)
            result.update(state)
            record["TransformProgress"] = _summary(record["_progress"])
            return record

        self.store.modify(KIND, name, change)
        return result

    def _assemble(self, parts_dir: Path, count: int, target: str) -> None:
        """Concatenate an object's committed parts into its `.out`, written whole."""
        with self.objects.open(target, "wb") as out:
            for number in range(count):
                with (parts_dir / f"part-{number:06d}").open("rb") as part:
                    shutil.copyfileobj(part, out, 1024 * 1024)

    def _finish(self, name: str, status: str, reason: str | None = None) -> None:
        def change(record: dict[str, Any]) -> dict[str, Any] | None:
            if record["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
                return None
            now = round(time.time(), 3)
            record["TransformJobStatus"] = status
            record["TransformEndTime"] = now
            record["LastModifiedTime"] = now
            if reason is not None:
                record["FailureReason"] = fit_failure_reason(reason)
            return record

        self.store.modify(KIND, name, change)
        shutil.rmtree(self.work_root / name, ignore_errors=True)

    def meter(self) -> None:
        """Add the time since the last call to every running job instance's meter."""
        now = time.monotonic()
        elapsed, self._metered_at = now - self._metered_at, now
        for name, instances in self._instances.items():
            for instance in instances:
                charge(name, _VARIANT, instance, elapsed)


async def _all_or_none(work: list[Any]) -> None:
    """Run coroutines together; the first failure cancels the rest and is raised."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _summary(progress: dict[str, Any]) -> dict[str, int]:
    states = progress["objects"]
    return {
        "ObjectsTotal": len(states),
        "ObjectsCompleted": sum(1 for s in states if s["done"]),
        "RecordsProcessed": sum(s["records"] for s in states),
        "BytesProcessed": sum(s["offset"] for s in states),
    }


def _seal(part: IO[bytes], parts_dir: Path, number: int) -> None:
    """Make a finished part durable under its final name before the store points at it."""
    part.flush()
    os.fsync(part.fileno())
    part.close()
    os.replace(parts_dir / f".part-{number:06d}", parts_dir / f"part-{number:06d}")


def _drop_uncommitted(parts_dir: Path, committed: int) -> None:
    """Parts the store does not count were written after the last commit: a crash came
    between writing them and recording them. Their batches run again."""
    if not parts_dir.is_dir():
        return
    for path in parts_dir.iterdir():
        number = path.name.rpartition("-")[2]
        if path.name.startswith(".") or not number.isdigit() or int(number) >= committed:
            path.unlink(missing_ok=True)

