"""Data capture end to end: an EndpointConfig with a DataCaptureConfig on a real server;
boto3 invocations; the capture files read back from the embedded object store
(s3://capture/... is `data_dir/objects/capture/...`) and compared with what was sent and
answered."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deployed, unique, wait_for_status
from tests.support.models import put_iris_model
from tests.support.server import ServerProcess, running_server


@pytest.fixture(scope="module")
def capturing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("capture") / "data",
        env={"MODELHOST_CAPTURE_FLUSH_INTERVAL": "0.2"},
    ) as process:
        put_iris_model(process.data_dir)
        yield process


def _capture(percent: float, **extra: Any) -> dict[str, Any]:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percent,
        "DestinationS3Uri": "s3://capture/iris",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        **extra,
    }


def _config(sm, name: str, model: str, capture: dict[str, Any]) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        DataCaptureConfig=capture,
    )


def _model(sm) -> str:
    name = unique("capture")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": "s3://models/iris/model.tar.gz",
        },
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    return name


def _endpoint(sm, capture: dict[str, Any]) -> str:
    name = _model(sm)
    _config(sm, name, name, capture)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sm, name))
    wait_for_status(sm, name, {"InService"})
    return name


def _records(data_dir: Path, endpoint: str) -> list[tuple[Path, dict[str, Any]]]:
    root = data_dir / "objects" / "capture" / "iris" / endpoint
    return [
        (path.relative_to(root), json.loads(line))
        for path in sorted(root.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _wait_for_records(data_dir: Path, endpoint: str, least: int) -> list:
    deadline = time.monotonic() + 30
    while len(records := _records(data_dir, endpoint)) < least:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(records)} capture records, wanted {least}")
        time.sleep(0.1)
    return records


def test_full_sampling_writes_one_record_per_request_in_sagemakers_layout(
    capturing: ServerProcess,
) -> None:
    sm, rt = capturing.client("sagemaker"), capturing.client("sagemaker-runtime")
    endpoint = _endpoint(sm, _capture(100))
    described = sm.describe_endpoint(EndpointName=endpoint)["DataCaptureConfig"]
    assert described["EnableCapture"] is True and described["CaptureStatus"] == "Started"
    assert described["CurrentSamplingPercentage"] == 100
    assert described["DestinationS3Uri"] == "s3://capture/iris"
    before = datetime.datetime.now(datetime.UTC)
    sent = {}
    for i in range(40):
        body = f"{5 + i / 10:.1f},3.5,1.4,0.2"
        answer = rt.invoke_endpoint(
            EndpointName=endpoint, ContentType="text/csv", Body=body, InferenceId=f"req-{i}"
        )
        sent[f"req-{i}"] = (body, answer["Body"].read().decode(), answer["ContentType"])
    after = datetime.datetime.now(datetime.UTC)
    # JSON bodies are not listed as text types: captured base64.
    rt.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body="[[5.1,3.5,1.4,0.2]]"
    )
    records = _wait_for_records(capturing.data_dir, endpoint, 41)
    time.sleep(1)  # several flush intervals: nothing more comes
    records = _records(capturing.data_dir, endpoint)
    assert len(records) == 41
    hours = {f"{t:%Y/%m/%d/%H}" for t in (before, after)}
    seen = {}
    for path, record in records:
        assert path.parts[0] == "AllTraffic"
        assert "/".join(path.parts[1:5]) in hours
        assert record["eventVersion"] == "0"
        assert record["eventMetadata"]["eventId"]
        assert record["eventMetadata"]["inferenceTime"].endswith("Z")
        inference_id = record["eventMetadata"].get("inferenceId")
        if inference_id is not None:
            seen[inference_id] = record["captureData"]
        else:
            json_input = record["captureData"]["endpointInput"]
    assert set(seen) == set(sent)
    for inference_id, (body, output, content_type) in sent.items():
        data = seen[inference_id]
        assert data["endpointInput"] == {
            "observedContentType": "text/csv",
            "mode": "INPUT",
            "data": body,
            "encoding": "CSV",
        }
        assert data["endpointOutput"]["mode"] == "OUTPUT"
        assert data["endpointOutput"]["data"] == output
        assert data["endpointOutput"]["observedContentType"] == content_type
    assert json_input["encoding"] == "BASE64"
    assert json_input["data"] == "W1s1LjEsMy41LDEuNCwwLjJdXQ=="


def test_ten_percent_sampling_and_update_endpoint_changes_it(capturing: ServerProcess) -> None:
    sm, rt = capturing.client("sagemaker"), capturing.client("sagemaker-runtime")
    endpoint = _endpoint(sm, _capture(100, CaptureOptions=[{"CaptureMode": "Input"}]))
    lower = f"{endpoint}-ten"
    _config(sm, lower, endpoint, _capture(10, CaptureOptions=[{"CaptureMode": "Input"}]))
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=lower)
    described = wait_for_status(sm, endpoint, {"InService"})
    assert described["DataCaptureConfig"]["CurrentSamplingPercentage"] == 10

    def invoke(i: int) -> None:
        rt.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body="5.1,3.5,1.4,0.2")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(invoke, range(2000)))
    time.sleep(1.5)
    records = _records(capturing.data_dir, endpoint)
    # 200 expected; 4.5 standard deviations either side.
    assert 140 <= len(records) <= 260, len(records)
    assert all(set(r["captureData"]) == {"endpointInput"} for _, r in records)


def test_capture_settings_it_cannot_follow_are_refused(capturing: ServerProcess) -> None:
    sm = capturing.client("sagemaker")
    model = _model(sm)
    for capture, words in (
        (_capture(100, KmsKeyId="key"), "KmsKeyId"),
        (_capture(100, DestinationS3Uri="https://example.com/capture"), "s3://"),
    ):
        with pytest.raises(ClientError) as refused:
            _config(sm, unique("bad"), model, capture)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert words in refused.value.response["Error"]["Message"]


def test_a_clean_stop_writes_what_is_buffered(tmp_path: Path) -> None:
    with running_server(
        tmp_path / "data", env={"MODELHOST_CAPTURE_FLUSH_INTERVAL": "3600"}
    ) as server:
        put_iris_model(server.data_dir)
        sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
        endpoint = _endpoint(sm, _capture(100))
        for _ in range(7):
            rt.invoke_endpoint(
                EndpointName=endpoint, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
            )
        time.sleep(0.5)
        assert _records(server.data_dir, endpoint) == []
        deployed.remove((sm, endpoint))
        server.stop()
    assert len(_records(tmp_path / "data", endpoint)) == 7


def test_retain_all_variant_properties_keeps_capture_unless_excluded(
    capturing: ServerProcess,
) -> None:
    sm = capturing.client("sagemaker")
    endpoint = _endpoint(sm, _capture(100))
    lower = f"{endpoint}-ten"
    _config(sm, lower, endpoint, _capture(10))

    def sampling() -> float:
        described = wait_for_status(sm, endpoint, {"InService"})
        assert described["EndpointConfigName"] == lower
        return described["DataCaptureConfig"]["CurrentSamplingPercentage"]

    sm.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=lower, RetainAllVariantProperties=True
    )
    assert sampling() == 100
    sm.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=lower,
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DataCaptureConfig"}],
    )
    assert sampling() == 10
