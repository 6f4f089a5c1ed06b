"""Data capture for batch transform jobs, as SageMaker documents it for CreateTransformJob's
`DataCaptureConfig` (BatchDataCaptureConfig).

A batch job does not copy bodies the way an endpoint does: its input objects and its
`.out` objects are already in the object store, so the capture is two manifests, in the
manifest-file form a transform job reads (`[{"prefix": "s3://..."}, "key", ...]`):

    DEST/input/yyyy/mm/dd/hh/JOB-NNNNNN.jsonl    the input object that was transformed
    DEST/output/yyyy/mm/dd/hh/JOB-NNNNNN.jsonl   the `.out` object it produced

labelled with the hour the job started (UTC), so Model Monitor picks the portion to read
by time. One manifest pair is written per input object, once its `.out` is in the object
store and before the object is counted done; its name is fixed by the job and the
object's index, so a restarted server that writes it again replaces it: nothing is listed
twice.

`GenerateInferenceId` appends to every output record an inference id (a random UUID) and
the job's start time: two CSV columns, or the fields `SageMakerInferenceId` and
`SageMakerInferenceTime` of a JSON / JSON Lines record. Records are tagged as their part
is written, so the ids of a committed part are the ones a resumed job keeps.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from modelhost.storage import ObjectStore

INFERENCE_ID = "SageMakerInferenceId"
INFERENCE_TIME = "SageMakerInferenceTime"
_CSV = "text/csv"
_JSON = frozenset({"application/json", "application/jsonlines", "application/x-jsonlines"})


class InferenceIdError(ValueError):
    """Output records that cannot carry an inference id (not CSV, JSON or JSON Lines)."""


def _split(uri: str, relative: str) -> tuple[str, str]:
    """A manifest's prefix and key for the object `uri`, which ends with `relative`."""
    return uri[: len(uri) - len(relative)], relative


@dataclass(frozen=True)
class BatchCapture:
    """A transform job's DataCaptureConfig as the controller applies it."""

    job: str
    destination: str  # DestinationS3Uri, without a trailing slash
    started: float  # TransformStartTime
    inference_ids: bool

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BatchCapture | None:
        config = record.get("DataCaptureConfig")
        if not config:
            return None
        return cls(
            job=record["TransformJobName"],
            destination=config["DestinationS3Uri"].rstrip("/"),
            started=float(record["TransformStartTime"]),
            inference_ids=bool(config.get("GenerateInferenceId", False)),
        )

    @property
    def inference_time(self) -> str:
        when = datetime.datetime.fromtimestamp(self.started, datetime.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def manifest_uris(self, index: int) -> tuple[str, str]:
        """Where object `index`'s input and output manifests go."""
        when = datetime.datetime.fromtimestamp(self.started, datetime.UTC)
        name = f"{when:%Y/%m/%d/%H}/{self.job}-{index:06d}.jsonl"
        return f"{self.destination}/input/{name}", f"{self.destination}/output/{name}"

    def write_manifests(
        self,
        objects: ObjectStore,
        index: int,
        source: tuple[str, str],
        output: tuple[str, str],
    ) -> None:
        """Record object `index`: `source` and `output` are (uri, key relative to its
        manifest prefix). Written whole under a fixed name, so writing again is harmless."""
        for uri, (target, relative) in zip(
            self.manifest_uris(index), (source, output), strict=True
        ):
            prefix, key = _split(target, relative)
            lines = [orjson.dumps({"prefix": prefix}), orjson.dumps(key)]
            objects.put_bytes(uri, b"[\n" + b",\n".join(lines) + b"\n]\n")

    def tag(self, output: bytes, content_type: str | None) -> bytes:
        """`output` (a batch's records, one a line) with an inference id and the job's
        start time appended to each record."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != _CSV and media not in _JSON:
            raise InferenceIdError(
                f"GenerateInferenceId needs CSV, JSON or JSON Lines output; the model "
                f"answered {content_type or 'without a content type'}."
            )
        at = self.inference_time
        tagged = []
        for line in output.splitlines():
            if not line.strip():
                continue
            if media == _CSV:
                tagged.append(line + f",{uuid.uuid4()},{at}".encode())
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InferenceIdError(f"an output record is not JSON ({exc})") from None
            if not isinstance(value, dict):
                raise InferenceIdError(
                    "GenerateInferenceId adds fields to JSON output records, which must be "
                    f"JSON objects; the model answered {line[:64]!r}."
                )
            value[INFERENCE_ID] = str(uuid.uuid4())
            value[INFERENCE_TIME] = at
            tagged.append(orjson.dumps(value))
        return b"".join(line + b"\n" for line in tagged)
