"""A transform job's inference ids and capture manifests, without a server."""

from __future__ import annotations

import json
import uuid

import pytest

from modelhost.capture import BatchCapture, InferenceIdError

STARTED = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _capture() -> BatchCapture:
    return BatchCapture("job", "s3://dest", STARTED, inference_ids=True)


def test_csv_records_get_an_id_and_the_start_time_and_blank_lines_are_dropped() -> None:
    lines = _capture().tag(b"1\n\n2\n", "text/csv; charset=utf-8").decode().splitlines()
    assert [line.split(",")[0] for line in lines] == ["1", "2"]
    assert {line.split(",")[2] for line in lines} == {"2023-11-14T22:13:20Z"}
    ids = [uuid.UUID(line.split(",")[1]) for line in lines]
    assert len(set(ids)) == 2


def test_json_records_must_be_objects_and_other_output_is_refused() -> None:
    (record,) = _capture().tag(b'{"a": 1}', "application/jsonlines").splitlines()
    assert json.loads(record)["SageMakerInferenceTime"] == "2023-11-14T22:13:20Z"
    with pytest.raises(InferenceIdError, match="JSON objects"):
        _capture().tag(b"[1, 2]\n", "application/json")
    with pytest.raises(InferenceIdError, match="application/x-npy"):
        _capture().tag(b"\x93NUMPY", "application/x-npy")


def test_manifests_have_fixed_names_under_the_start_hour() -> None:
    written: dict[str, bytes] = {}

    class Objects:
        def put_bytes(self, uri: str, data: bytes) -> None:
            written[uri] = data

    capture = _capture()
    for _ in range(2):  # a resumed job writes the same names again
        capture.write_manifests(
            Objects(),  # type: ignore[arg-type]
            7,
            ("s3://in/p/day/a.csv", "day/a.csv"),
            ("s3://out/day/a.csv.out", "day/a.csv.out"),
        )
    assert {uri: json.loads(data) for uri, data in written.items()} == {
        "s3://dest/input/2023/11/14/22/job-000007.jsonl": [{"prefix": "s3://in/p/"}, "day/a.csv"],
        "s3://dest/output/2023/11/14/22/job-000007.jsonl": [
            {"prefix": "s3://out/"},
            "day/a.csv.out",
        ],
    }
