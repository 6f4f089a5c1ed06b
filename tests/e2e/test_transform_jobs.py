"""Batch transform jobs end to end: boto3 against a real server, inputs and outputs in
its embedded object store, the session's iris model."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.support.endpoints import unique
from tests.support.models import iris_classifier, iris_rows

WAIT = {"Delay": 1, "MaxAttempts": 120}


@pytest.fixture(scope="module")
def iris_model(sagemaker, iris_model_url: str) -> str:
    name = unique("iris-batch")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": iris_model_url},
    )
    return name


def _objects(server) -> Path:
    return server.data_dir / "objects"


def _put(server, uri: str, data: bytes) -> None:
    path = _objects(server) / uri.removeprefix("s3://")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _get(server, uri: str) -> bytes:
    return (_objects(server) / uri.removeprefix("s3://")).read_bytes()


def _rows(count: int) -> list[list[float]]:
    base = iris_rows(6)
    return [base[i % len(base)] for i in range(count)]


def _csv(rows: list[list[float]], ids: bool = False) -> bytes:
    return "".join(
        (f"{i}," if ids else "") + ",".join(map(str, row)) + "\n" for i, row in enumerate(rows)
    ).encode()


def _expected(rows: list[list[float]]) -> list[int]:
    return [int(v) for v in iris_classifier().predict(rows)]


def _run(sagemaker, model: str, source: str, output: str, **extra) -> dict:
    name = unique("tj")
    transform_input = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
        "ContentType": "text/csv",
        "SplitType": "Line",
        **extra.pop("TransformInput", {}),
    }
    sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput=transform_input,
        TransformOutput={
            "S3OutputPath": output,
            "AssembleWith": "Line",
            **extra.pop("TransformOutput", {}),
        },
        TransformResources=extra.pop(
            "TransformResources", {"InstanceType": "ml.m5.large", "InstanceCount": 1}
        ),
        **extra,
    )
    # A Failed job ends the waiter with an error; the caller checks the description.
    with contextlib.suppress(WaiterError):
        sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig=WAIT
        )
    return sagemaker.describe_transform_job(TransformJobName=name)


def test_csv_multi_record_over_two_objects(server, sagemaker, iris_model) -> None:
    base = unique("s3://batch/in")
    rows_a, rows_b = _rows(500), _rows(7)
    _put(server, f"{base}/a.csv", _csv(rows_a))
    _put(server, f"{base}/sub/b.csv", _csv(rows_b))
    out = unique("s3://batch/out")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/",
        out,
        MaxPayloadInMB=1,
        BatchStrategy="MultiRecord",
        MaxConcurrentTransforms=2,
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2},
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert _get(server, f"{out}/a.csv.out").decode().split() == list(map(str, _expected(rows_a)))
    assert _get(server, f"{out}/sub/b.csv.out").decode().split() == list(
        map(str, _expected(rows_b))
    )
    listed = sagemaker.list_transform_jobs(NameContains=job["TransformJobName"])
    assert [s["TransformJobStatus"] for s in listed["TransformJobSummaries"]] == ["Completed"]


def test_progress_in_raw_describe(server, sagemaker, iris_model) -> None:
    """boto3 drops the extra member; the raw JSON carries it."""
    base = unique("s3://batch/in")
    _put(server, f"{base}/a.csv", _csv(_rows(40)))
    job = _run(
        sagemaker, iris_model, f"{base}/", unique("s3://batch/out"), BatchStrategy="SingleRecord"
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert "TransformProgress" not in job
    raw = {}
    sagemaker.meta.events.register(
        "after-call.sagemaker.DescribeTransformJob",
        lambda http_response, **_: raw.update(json.loads(http_response.content)),
    )
    sagemaker.describe_transform_job(TransformJobName=job["TransformJobName"])
    assert raw["TransformProgress"] == {
        "ObjectsTotal": 1,
        "ObjectsCompleted": 1,
        "RecordsProcessed": 40,
        "BytesProcessed": len(_csv(_rows(40))),
    }


def test_gzip_and_manifest(server, sagemaker, iris_model) -> None:
    base = unique("s3://batch/in")
    rows = _rows(300)
    _put(server, f"{base}/x.csv.gz", gzip.compress(_csv(rows)))
    _put(server, f"{base}/manifest.json", json.dumps([{"prefix": f"{base}/"}, "x.csv.gz"]).encode())
    out = unique("s3://batch/out")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/manifest.json",
        out,
        TransformInput={
            "CompressionType": "Gzip",
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"{base}/manifest.json"}
            },
        },
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert _get(server, f"{out}/x.csv.gz.out").decode().split() == list(map(str, _expected(rows)))


def test_csv_filters_and_join(server, sagemaker, iris_model) -> None:
    """The id column is filtered out of the request, joined back, and the output keeps
    the id and the prediction only."""
    base = unique("s3://batch/in")
    rows = _rows(50)
    _put(server, f"{base}/a.csv", _csv(rows, ids=True))
    out = unique("s3://batch/out")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/a.csv",
        out,
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    lines = _get(server, f"{out}/a.csv.out").decode().splitlines()
    assert lines == [f"{i},{p}" for i, p in enumerate(_expected(rows))]


def test_json_lines_filters_and_join(server, sagemaker, iris_model) -> None:
    base = unique("s3://batch/in")
    rows = _rows(20)
    _put(
        server,
        f"{base}/a.jsonl",
        b"".join(
            json.dumps({"id": f"r{i}", "features": row}).encode() + b"\n"
            for i, row in enumerate(rows)
        ),
    )
    out = unique("s3://batch/out")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/",
        out,
        TransformInput={"ContentType": "application/jsonlines"},
        TransformOutput={"Accept": "application/jsonlines"},
        DataProcessing={
            "InputFilter": "$.features",
            "JoinSource": "Input",
            "OutputFilter": "$['id','SageMakerOutput']",
        },
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    lines = [json.loads(x) for x in _get(server, f"{out}/a.jsonl.out").splitlines()]
    assert lines == [[f"r{i}", p] for i, p in enumerate(_expected(rows))]


def test_rejected_record_fails_the_job_naming_it(server, sagemaker, iris_model) -> None:
    base = unique("s3://batch/in")
    data = _csv(_rows(30)).splitlines(keepends=True)
    data[16] = b"oops,not,a,number\n"
    _put(server, f"{base}/bad.csv", b"".join(data))
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/",
        unique("s3://batch/out"),
        ModelClientConfig={"InvocationsMaxRetries": 0},
    )
    assert job["TransformJobStatus"] == "Failed"
    assert f"{base}/bad.csv" in job["FailureReason"]
    assert "record 17" in job["FailureReason"]


@pytest.mark.parametrize("suffix", ["/empty/", "/missing/"])
def test_empty_or_missing_prefix_fails_with_reason(server, sagemaker, iris_model, suffix) -> None:
    base = unique("s3://batch/in")
    (_objects(server) / base.removeprefix("s3://") / "empty").mkdir(parents=True)
    job = _run(sagemaker, iris_model, base + suffix, unique("s3://batch/out"))
    assert job["TransformJobStatus"] == "Failed"
    assert "No input objects found" in job["FailureReason"]


def test_bad_requests_are_validation_errors(sagemaker, iris_model) -> None:
    def create(**changes):
        params = {
            "TransformJobName": unique("tj"),
            "ModelName": iris_model,
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://batch/x/"}
                },
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": "s3://batch/y/"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        }
        params.update(changes)
        with pytest.raises(ClientError) as caught:
            sagemaker.create_transform_job(**params)
        return caught.value.response["Error"]

    assert create(ModelName="no-such-model")["Code"] == "ValidationException"
    assert "JSONPath" in create(DataProcessing={"InputFilter": "$[[["})["Message"]
    err = create(
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://batch/x/"}},
            "ContentType": "text/csv",
            "SplitType": "None",
        },
        DataProcessing={"JoinSource": "Input"},
    )
    assert "SplitType Line" in err["Message"]
    assert (
        create(TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 500})["Code"]
        == "ResourceLimitExceeded"
    )
    with pytest.raises(ClientError) as caught:
        sagemaker.describe_transform_job(TransformJobName="nope")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_stop_mid_job(server, sagemaker, iris_model) -> None:
    base = unique("s3://batch/in")
    _put(server, f"{base}/a.csv", _csv(_rows(20000)))
    name = unique("tj")
    sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=iris_model,
        BatchStrategy="SingleRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{base}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": unique("s3://batch/out")},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    deadline = time.monotonic() + 60
    while sagemaker.describe_transform_job(TransformJobName=name)[
        "TransformJobStatus"
    ] == "InProgress" and not _instance_logs(server, name):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sagemaker.stop_transform_job(TransformJobName=name)
    sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=name, WaiterConfig=WAIT
    )
    job = sagemaker.describe_transform_job(TransformJobName=name)
    assert job["TransformJobStatus"] == "Stopped"
    with pytest.raises(ClientError):
        sagemaker.stop_transform_job(TransformJobName=name)


def _instance_logs(server, name: str) -> list[Path]:
    return list((server.data_dir / "logs" / name).glob("*.log"))


def test_json_array_answers_join_to_csv_rows(server, sagemaker, iris_model) -> None:
    """Accept application/json: the model answers one array per batch; each element joins
    its record."""
    base = unique("s3://batch/in")
    rows = _rows(12)
    _put(server, f"{base}/a.csv", _csv(rows))
    out = unique("s3://batch/out")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/",
        out,
        TransformOutput={"Accept": "application/json"},
        DataProcessing={"JoinSource": "Input"},
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    lines = _get(server, f"{out}/a.csv.out").decode().splitlines()
    assert lines == [
        ",".join(map(str, row)) + f",{p}" for row, p in zip(rows, _expected(rows), strict=True)
    ]


def test_split_none_sends_each_object_whole(server, sagemaker, iris_model) -> None:
    base = unique("s3://batch/in")
    rows = _rows(9)
    _put(server, f"{base}/whole.csv", _csv(rows))
    out = unique("s3://batch/out")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/",
        out,
        TransformInput={"SplitType": "None"},
        TransformOutput={"AssembleWith": "None"},
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["BatchStrategy"] == "SingleRecord"
    assert _get(server, f"{out}/whole.csv.out").decode().split() == list(map(str, _expected(rows)))


def _manifests(server, destination: str, direction: str) -> dict[str, list]:
    """The capture manifests of one direction, by path under DEST/direction/."""
    root = _objects(server) / destination.removeprefix("s3://") / direction
    return {
        path.relative_to(root).as_posix(): json.loads(path.read_text())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _listed(server, manifests: dict[str, list]) -> dict[str, bytes]:
    """Every object the manifests name (their keys), read through each manifest's prefix."""
    listed: dict[str, bytes] = {}
    for manifest in manifests.values():
        prefix = manifest[0]["prefix"]
        for key in manifest[1:]:
            assert key not in listed, f"{key} is captured twice"
            listed[key] = _get(server, prefix + key)
    return listed


def test_data_capture_lists_inputs_and_outputs_in_sagemakers_layout(
    server, sagemaker, iris_model
) -> None:
    base = unique("s3://batch/in")
    rows_a, rows_b = _rows(300), _rows(9)
    inputs = {"a.csv": _csv(rows_a), "sub/b.csv": _csv(rows_b)}
    for key, body in inputs.items():
        _put(server, f"{base}/{key}", body)
    out, destination = unique("s3://batch/out"), unique("s3://capture/batch")
    job = _run(
        sagemaker,
        iris_model,
        f"{base}/",
        out,
        BatchStrategy="MultiRecord",
        DataCaptureConfig={"DestinationS3Uri": destination},
    )
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["DataCaptureConfig"] == {"DestinationS3Uri": destination}
    hour = job["TransformStartTime"].astimezone(datetime.UTC).strftime("%Y/%m/%d/%H")

    captured_inputs = _manifests(server, destination, "input")
    assert len(captured_inputs) == 2
    assert all(path.startswith(hour + "/") for path in captured_inputs), captured_inputs
    assert {m[0]["prefix"] for m in captured_inputs.values()} == {f"{base}/"}
    assert _listed(server, captured_inputs) == inputs

    captured_outputs = _manifests(server, destination, "output")
    assert sorted(captured_outputs) == sorted(captured_inputs)
    outputs = _listed(server, captured_outputs)
    assert {m[0]["prefix"] for m in captured_outputs.values()} == {f"{out}/"}
    assert sorted(outputs) == ["a.csv.out", "sub/b.csv.out"]
    assert outputs["a.csv.out"].decode().split() == list(map(str, _expected(rows_a)))
    assert outputs["sub/b.csv.out"].decode().split() == list(map(str, _expected(rows_b)))


def test_generate_inference_id_appends_an_id_and_the_start_time_to_each_record(
    server, sagemaker, iris_model
) -> None:
    base = unique("s3://batch/in")
    rows = _rows(40)
    _put(server, f"{base}/a.csv", _csv(rows, ids=True))
    _put(server, f"{base}/b.jsonl", b"".join(json.dumps({"x": r}).encode() + b"\n" for r in rows))
    destination = unique("s3://capture/batch")
    capture = {"DestinationS3Uri": destination, "GenerateInferenceId": True}
    csv_out, json_out = unique("s3://batch/out"), unique("s3://batch/out")
    csv_job = _run(
        sagemaker,
        iris_model,
        f"{base}/a.csv",
        csv_out,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        DataCaptureConfig=capture,
    )
    json_job = _run(
        sagemaker,
        iris_model,
        f"{base}/b.jsonl",
        json_out,
        BatchStrategy="MultiRecord",
        TransformInput={"ContentType": "application/jsonlines"},
        TransformOutput={"Accept": "application/jsonlines"},
        DataProcessing={"InputFilter": "$.x", "JoinSource": "Input"},
        DataCaptureConfig=capture,
    )
    ids: list[str] = []
    for job in (csv_job, json_job):
        assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
        assert job["DataCaptureConfig"] == capture
    started = csv_job["TransformStartTime"].astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    csv_lines = [line.split(",") for line in _get(server, f"{csv_out}/a.csv.out").decode().split()]
    assert [line[:2] for line in csv_lines] == [
        [str(i), str(p)] for i, p in enumerate(_expected(rows))
    ]
    assert {line[3] for line in csv_lines} == {started}
    ids += [line[2] for line in csv_lines]

    started = json_job["TransformStartTime"].astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    records = [json.loads(line) for line in _get(server, f"{json_out}/b.jsonl.out").splitlines()]
    assert [r["x"] for r in records] == rows
    assert [r["SageMakerOutput"] for r in records] == _expected(rows)
    assert {r["SageMakerInferenceTime"] for r in records} == {started}
    ids += [r["SageMakerInferenceId"] for r in records]
    assert len(set(ids)) == len(ids) == 2 * len(rows)
    assert all(uuid.UUID(i).version == 4 for i in ids)
    # the captured output manifests point at the tagged outputs
    outputs = _listed(server, _manifests(server, destination, "output"))
    assert outputs["a.csv.out"] == _get(server, f"{csv_out}/a.csv.out")
