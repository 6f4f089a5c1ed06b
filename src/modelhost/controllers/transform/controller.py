"""The transform job controller: runs batch transform jobs from the state store (a job's
lifecycle, and each input object streamed through mini-batches).

A job starts its own instances (the model server of its model, like an endpoint's),
spreads its input objects over them, and streams each object through mini-batches with
at most MaxConcurrentTransforms requests in flight per instance. Output is written in
parts on the server's disk; a part is committed (renamed into place, then its end offset
recorded in the store) once the answers for every batch in it have arrived, and an
object's `<name>.out` is assembled from its parts when the object is done. A restarted
server therefore resumes each unfinished object at its last committed offset: parts past
that offset are dropped, nothing is redone twice or lost. Instances always stop when the
job ends, however it ends.

With several servers on one state store a job runs on the one server that holds its
lease. Parts live on that server's disk, so an object another server had begun (its state
names that server as the parts' writer) starts over from its first record on the server
that takes the job over; objects already done are in the object store and stay done.
Output is only ever written whole, so a takeover duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

from modelhost.batch import (
    DataProcessing,
    InputError,
    MiniBatch,
    RecordError,
    input_objects,
    mini_batches,
    open_input,
    output_uri,
    skip,
)
from modelhost.capture import BatchCapture
from modelhost.config import Settings
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.controllers.transform import invoke, journal
from modelhost.controllers.transform.instances import JobInstances
from modelhost.controllers.transform.job import Job, JobFailed
from modelhost.domain import kinds
from modelhost.domain.failures import fit_failure_reason
from modelhost.instances import Instance, InstanceBackend, InstanceClient
from modelhost.storage import (
    InvalidObjectURI,
    LoopStore,
    ObjectStore,
    Ownership,
    StateStore,
    lease,
)

log = logging.getLogger(__name__)

KIND = kinds.TRANSFORM_JOB
_DEFAULT_TIMEOUT_S = 600.0  # SageMaker's InvocationsTimeoutInSeconds default
_DEFAULT_RETRIES = 3


class TransformController(ReconcileLoop):
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        objects: ObjectStore,
        backend: InstanceBackend,
        ownership: Ownership,
    ) -> None:
        super().__init__("transform reconcile", settings.health_interval_s)
        self.settings = settings
        self.ownership = ownership
        ownership.on_lost(self._lost)
        self.store = LoopStore(store)
        self.objects = objects
        self.backend = backend
        self.client = InstanceClient()
        self.instances = JobInstances(settings, objects, backend, self.client)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def work_root(self) -> Path:
        return self.settings.data_dir / "transform"

    async def step(self) -> None:
        await self.reconcile()
        self.instances.meter()

    async def shutdown(self) -> None:
        """Stop running jobs without changing their status: a restarted server resumes
        them from their last committed part."""
        await cancel_all(self._tasks.values())
        self.client.close()

    def _lost(self, name: str) -> None:
        """Another server holds the job now: stop here, leaving its status as it is."""
        kind, _, job = name.partition(":")
        task = self._tasks.get(job) if kind == KIND else None
        if task is not None:
            task.cancel()

    async def reconcile(self) -> None:
        records = [
            r
            for r in await self.store.list(KIND)
            if r["TransformJobStatus"] in ("InProgress", "Stopping")
        ]
        mine = await self.ownership.claim(lease(KIND, r["TransformJobName"]) for r in records)
        for record in records:
            name = record["TransformJobName"]
            status = record["TransformJobStatus"]
            task = self._tasks.get(name)
            if lease(KIND, name) not in mine:
                continue
            if status == "InProgress" and task is None:
                task = asyncio.create_task(self._run(name), name=f"transform:{name}")
                self._tasks[name] = task

                def forget(_: asyncio.Task[None], n: str = name) -> None:
                    self._tasks.pop(n, None)

                task.add_done_callback(forget)
            elif status == "Stopping":
                if task is not None:
                    if not task.cancelling():
                        task.cancel()
                else:
                    await self._finish(name, "Stopped")
                    await self.ownership.release([lease(KIND, name)])

    # --- one job ---------------------------------------------------------------------

    async def _run(self, name: str) -> None:
        record = await self.store.get(KIND, name)
        if record is None:
            return
        outcome: tuple[str, str | None] | None = None  # None: the server is shutting down
        try:
            job = await self._prepare(record)
            instances = await self.instances.start(record)
            if not job.concurrency:
                job.concurrency = await self.instances.container_concurrency(instances[0])
            pending: asyncio.Queue[int] = asyncio.Queue()
            done = job.record["_progress"]["objects"]
            for index in range(len(job.objects)):
                if not done[index]["done"]:
                    pending.put_nowait(index)
            await _all_or_none([self._worker(job, i, pending) for i in instances])
            outcome = ("Completed", None)
        except asyncio.CancelledError:
            current = await self.store.get(KIND, name)
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
            await self.instances.stop(name)
            if outcome is not None:
                await self._finish(name, *outcome)
                await self.ownership.release([lease(KIND, name)])

    async def _prepare(self, record: dict[str, Any]) -> Job:
        """The job's settings and its input list, read once and kept in the store so a
        resumed job works through the very same objects."""
        name = record["TransformJobName"]
        if "_progress" not in record:
            try:
                found = await asyncio.to_thread(
                    input_objects, self.objects, record["TransformInput"]["DataSource"]
                )
            except (InputError, InvalidObjectURI) as exc:
                raise JobFailed(str(exc)) from None
            progress = journal.new_progress(found)

            def start(r: dict[str, Any]) -> dict[str, Any]:
                r["_progress"] = progress
                r["TransformProgress"] = journal.summary(progress)
                return r

            record = await self.store.modify(KIND, name, start) or record
        transform_input = record["TransformInput"]
        output = record["TransformOutput"]
        headers = []
        if content_type := transform_input.get("ContentType"):
            headers.append((b"Content-Type", content_type.encode("latin-1")))
        if accept := output.get("Accept"):
            headers.append((b"Accept", accept.encode("latin-1")))
        client_config = record.get("ModelClientConfig", {})
        return Job(
            name=name,
            record=record,
            processing=DataProcessing(
                record["DataProcessing"], transform_input.get("ContentType"), accept
            ),
            objects=[tuple(x) for x in record["_progress"]["inputs"]],
            headers=headers,
            timeout_s=float(client_config.get("InvocationsTimeoutInSeconds", _DEFAULT_TIMEOUT_S)),
            retries=int(client_config.get("InvocationsMaxRetries", _DEFAULT_RETRIES)),
            concurrency=int(record.get("MaxConcurrentTransforms", 0)),
            work_dir=self.work_root / name,
            capture=BatchCapture.from_record(record),
        )

    async def _worker(self, job: Job, instance: Instance, pending: asyncio.Queue[int]) -> None:
        while not pending.empty():
            index = pending.get_nowait()
            await self._transform_object(job, instance, index)

    # --- one object ------------------------------------------------------------------

    async def _transform_object(self, job: Job, instance: Instance, index: int) -> None:
        uri, relative = job.objects[index]
        state = (await self.store.get(KIND, job.name))["_progress"]["objects"][index]  # type: ignore[index]
        parts_dir = job.work_dir / str(index)
        if state["parts"] and state.get("writer", self.ownership.holder) != self.ownership.holder:
            # Begun by another server, whose parts are on its disk: start the object over.
            log.info(
                "transform job %s: object %d was begun by %s; starting it over",
                job.name,
                index,
                state["writer"],
            )
            state = await self._commit(job.name, index, restart=True)
        await asyncio.to_thread(journal.drop_uncommitted, parts_dir, state["parts"])
        record = job.record
        transform_input = record["TransformInput"]
        max_bytes = (record["MaxPayloadInMB"] or 100) * 1024 * 1024

        def batches() -> Generator[MiniBatch, None, None]:
            with self.objects.open(uri, "rb") as raw:
                stream = open_input(raw, transform_input["CompressionType"])
                skip(stream, state["offset"])
                yield from mini_batches(
                    stream,
                    transform_input["SplitType"],
                    record["BatchStrategy"],
                    max_bytes,
                    first_record=state["records"],
                    offset=state["offset"],
                )

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
        try:
            await asyncio.to_thread(
                journal.assemble, self.objects, parts_dir, state["parts"], target
            )
        except InvalidObjectURI as exc:
            raise JobFailed(f"Cannot write the output of {uri}: {exc}") from None
        if job.capture is not None:
            # before the object counts done: a crash in between writes the same names again
            try:
                await asyncio.to_thread(
                    job.capture.write_manifests,
                    self.objects,
                    index,
                    (uri, relative),
                    (target, f"{relative}.out"),
                )
            except (InvalidObjectURI, OSError) as exc:
                raise JobFailed(f"Cannot write the data capture of {uri}: {exc}") from None
        await self._commit(job.name, index, done=True)
        await asyncio.to_thread(shutil.rmtree, parts_dir, True)

    async def _stream(
        self,
        job: Job,
        instance: Instance,
        index: int,
        source: Iterator[MiniBatch],
        parts_dir: Path,
        state: dict[str, Any],
    ) -> None:
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
                    task = asyncio.create_task(
                        invoke.process(self.client, job, instance, job.objects[index][0], batch)
                    )
                    in_flight.append((batch, task))
                if not in_flight:
                    break
                batch, task = in_flight.popleft()
                output = await task
                if part is None:
                    part = journal.open_part(parts_dir, state["parts"])
                part.write(output)
                last = batch
                # A part is committed after this much input: smaller parts mean less
                # redone work after a crash, larger ones fewer store writes.
                if batch.end_offset - part_start >= self.settings.transform_part_bytes:
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

    async def _seal(
        self,
        name: str,
        index: int,
        part: IO[bytes],
        parts_dir: Path,
        state: dict[str, Any],
        batch: MiniBatch,
    ) -> None:
        """Commit a part: durable under its final name first, then counted in the store."""
        await asyncio.to_thread(journal.seal, part, parts_dir, state["parts"])
        state.update(
            await self._commit(
                name,
                index,
                offset=batch.end_offset,
                records=batch.first_record + batch.records,
                writer=self.ownership.holder,
            )
        )

    # --- progress ----------------------------------------------------------------------

    async def _commit(self, name: str, index: int, **changes: Any) -> dict[str, Any]:
        """Record one object's progress; returns its new state."""
        result: dict[str, Any] = {}

        def change(record: dict[str, Any]) -> dict[str, Any]:
            result.update(journal.record_commit(record["_progress"], index, **changes))
            record["TransformProgress"] = journal.summary(record["_progress"])
            return record

        await self.store.modify(KIND, name, change)
        return result

    async def _finish(self, name: str, status: str, reason: str | None = None) -> None:
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

        await self.store.modify(KIND, name, change)
        shutil.rmtree(self.work_root / name, ignore_errors=True)


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
