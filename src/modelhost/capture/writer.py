"""The data capture writer: invocations are buffered in memory as they are answered and
written to the object store in the background, so capture costs the hot path one
sampling draw and one list append.

Every `flush_s` (or sooner, once `file_bytes` of bodies are waiting) the buffer is taken
whole, formatted (:mod:`.records`) and written, in a worker thread, as JSON Lines files
under DEST/ENDPOINT/VARIANT/yyyy/mm/dd/hh/: one file per prefix per flush, split so none
holds much more than `file_bytes`. A clean stop writes what is buffered; a crash loses at
most the last flush interval. A write that fails is logged and its records dropped: the
buffer is bounded, and capture never holds up or fails an invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections import defaultdict

import orjson

from modelhost.capture.records import Captured, CapturePolicy
from modelhost.storage import ObjectStore

log = logging.getLogger(__name__)


class CaptureSink:
    """One endpoint's capture, as the invoke path sees it."""

    __slots__ = ("_writer", "policy")

    def __init__(self, policy: CapturePolicy, writer: CaptureWriter) -> None:
        self.policy = policy
        self._writer = writer

    def record(
        self,
        variant: str,
        input_type: str | None,
        body: bytes,
        output_type: str,
        output: bytes,
        inference_id: str | None,
    ) -> None:
        if self.policy.sampled():
            self._writer.add(
                self.policy,
                Captured(variant, time.time(), input_type, body, output_type, output, inference_id),
            )


class CaptureWriter:
    def __init__(self, objects: ObjectStore, flush_s: float, file_bytes: int) -> None:
        self.objects = objects
        self.flush_s = flush_s
        self.file_bytes = file_bytes
        self._buffer: list[tuple[CapturePolicy, Captured]] = []
        self._buffered_bytes = 0
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def sink(self, policy: CapturePolicy | None) -> CaptureSink | None:
        return None if policy is None else CaptureSink(policy, self)

    def add(self, policy: CapturePolicy, captured: Captured) -> None:
        if self._buffered_bytes > 8 * self.file_bytes:
            log.warning("data capture is behind; dropping a record of %s", policy.endpoint)
            return
        self._buffer.append((policy, captured))
        self._buffered_bytes += len(captured.input) + len(captured.output)
        if self._buffered_bytes >= self.file_bytes:
            self._full.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="data capture")

    async def close(self) -> None:
        """Stop the background flush and write whatever is buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_s):
                    await self._full.wait()
            self._full.clear()
            await self.flush()

    async def flush(self) -> None:
        taken, self._buffer, self._buffered_bytes = self._buffer, [], 0
        if taken:
            await asyncio.to_thread(self._write, taken)

    def _write(self, taken: list[tuple[CapturePolicy, Captured]]) -> None:
        files: dict[str, list[bytes]] = defaultdict(list)
        for policy, captured in taken:
            files[policy.prefix(captured.variant, captured.at)].append(
                orjson.dumps(policy.record(captured))
            )
        for prefix, lines in files.items():
            for chunk in self._chunks(lines):
                now = datetime.datetime.now(datetime.UTC)
                name = f"{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4().hex[:8]}"
                try:
                    self.objects.put_bytes(f"{prefix}/{name}.jsonl", b"\n".join(chunk) + b"\n")
                except OSError:
                    log.exception(
                        "data capture: could not write %d records to %s", len(chunk), prefix
                    )

    def _chunks(self, lines: list[bytes]) -> list[list[bytes]]:
        chunks: list[list[bytes]] = [[]]
        size = 0
        for line in lines:
            if chunks[-1] and size + len(line) > self.file_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(line)
            size += len(line) + 1
        return chunks
