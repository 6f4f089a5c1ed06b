"""One captured invocation in SageMaker's data capture format, and the policy that says
which invocations are captured and how.

A line of a capture file is what SageMaker Model Monitor reads:

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
     "data": "5.1,3.5,1.4,0.2", "encoding": "CSV"}, "endpointOutput": {...}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-01-01T12:00:00Z",
     "inferenceId": "..."}, "eventVersion": "0"}

Bodies whose content type `CaptureContentTypeHeader` lists as CSV or JSON are kept as
text (encoding `CSV` / `JSON`); every other body is base64 (`BASE64`), as SageMaker does
when no content type header is configured.
"""

from __future__ import annotations

import base64
import datetime
import random
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Captured:
    """What the invoke path hands over: raw, formatted later off the hot path."""

    variant: str
    at: float  # time.time()
    input_type: str | None
    input: bytes
    output_type: str
    output: bytes
    inference_id: str | None


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class CapturePolicy:
    """An endpoint's DataCaptureConfig as the invoke path applies it."""

    endpoint: str
    destination: str  # DestinationS3Uri, without a trailing slash
    sampling_percent: float
    inputs: bool
    outputs: bool
    csv_types: frozenset[str]
    json_types: frozenset[str]

    @classmethod
    def from_config(cls, endpoint: str, config: dict[str, Any]) -> CapturePolicy | None:
        """None when capture is off (EnableCapture false, or nothing to capture)."""
        if not config.get("EnableCapture", True):
            return None
        modes = {o["CaptureMode"] for o in config["CaptureOptions"]}
        header = config.get("CaptureContentTypeHeader", {})
        return cls(
            endpoint=endpoint,
            destination=config["DestinationS3Uri"].rstrip("/"),
            sampling_percent=float(config["InitialSamplingPercentage"]),
            inputs=bool(modes & {"Input", "InputAndOutput"}),
            outputs=bool(modes & {"Output", "InputAndOutput"}),
            csv_types=frozenset(_media(t) for t in header.get("CsvContentTypes", [])),
            json_types=frozenset(_media(t) for t in header.get("JsonContentTypes", [])),
        )

    def sampled(self) -> bool:
        return self.sampling_percent >= 100 or random.random() * 100 < self.sampling_percent

    def _data(self, mode: str, content_type: str | None, body: bytes) -> dict[str, str]:
        media = _media(content_type)
        encoding = "CSV" if media in self.csv_types else "JSON" if media in self.json_types else ""
        if encoding:
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:
                encoding = ""
        if not encoding:
            encoding, data = "BASE64", base64.b64encode(body).decode("ascii")
        return {
            "observedContentType": content_type or "",
            "mode": mode,
            "data": data,
            "encoding": encoding,
        }

    def record(self, captured: Captured) -> dict[str, Any]:
        capture: dict[str, Any] = {}
        if self.inputs:
            capture["endpointInput"] = self._data("INPUT", captured.input_type, captured.input)
        if self.outputs:
            capture["endpointOutput"] = self._data("OUTPUT", captured.output_type, captured.output)
        when = datetime.datetime.fromtimestamp(captured.at, datetime.UTC)
        metadata = {
            "eventId": str(uuid.uuid4()),
            "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{when.microsecond // 1000:03d}Z",
        }
        if captured.inference_id is not None:
            metadata["inferenceId"] = captured.inference_id
        return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}

    def prefix(self, variant: str, at: float) -> str:
        """DEST/ENDPOINT/VARIANT/yyyy/mm/dd/hh: where a record made at `at` goes."""
        when = datetime.datetime.fromtimestamp(at, datetime.UTC)
        return f"{self.destination}/{self.endpoint}/{variant}/{when:%Y/%m/%d/%H}"
