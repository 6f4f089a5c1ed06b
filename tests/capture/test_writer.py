"""The capture writer on a real embedded object store: files rolled by size, a flush on
close, records in SageMaker's layout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from modelhost.capture import CapturePolicy, CaptureWriter
from modelhost.storage import FsspecObjectStore

CONFIG = {
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://capture/unit/",
    "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
    "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
}


def test_files_roll_by_size_and_close_writes_everything(tmp_path: Path) -> None:
    policy = CapturePolicy.from_config("ep", CONFIG)
    assert policy is not None

    async def scenario() -> None:
        writer = CaptureWriter(FsspecObjectStore(tmp_path), flush_s=3600, file_bytes=1000)
        writer.start()
        sink = writer.sink(policy)
        assert sink is not None
        for i in range(30):
            sink.record("V", "application/json", b'{"x": %d}' % i, "text/plain", b"\x00", None)
        await writer.close()

    asyncio.run(scenario())
    files = sorted((tmp_path / "capture" / "unit" / "ep" / "V").rglob("*.jsonl"))
    assert len(files) > 1
    assert all(f.stat().st_size < 1000 + 400 for f in files)
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(json.loads(r["captureData"]["endpointInput"]["data"])["x"] for r in records) == (
        list(range(30))
    )
    first = records[0]["captureData"]
    assert first["endpointInput"]["encoding"] == "JSON"
    assert first["endpointOutput"] == {
        "observedContentType": "text/plain",
        "mode": "OUTPUT",
        "data": "AA==",
        "encoding": "BASE64",
    }
    assert len(files[0].relative_to(tmp_path / "capture" / "unit" / "ep" / "V").parts) == 5


def test_capture_off_and_sampling_none() -> None:
    assert CapturePolicy.from_config("ep", {**CONFIG, "EnableCapture": False}) is None
    policy = CapturePolicy.from_config("ep", {**CONFIG, "InitialSamplingPercentage": 0})
    assert policy is not None and not any(policy.sampled() for _ in range(1000))
