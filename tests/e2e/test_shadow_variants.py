"""Shadow variants end to end: an EndpointConfig with ShadowProductionVariants on a real
server. One shadow runs the production model with data capture on, one raises on every
request; clients must only ever see the production variant's answers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.endpoints import deployed, unique, wait_for_status
from tests.support.models import put_iris_model, put_model
from tests.support.server import ServerProcess, running_server

BROKEN = b"""
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    raise RuntimeError("the shadow model is broken")
"""


@pytest.fixture(scope="module")
def shadowing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("shadow") / "data",
        env={"MODELHOST_CAPTURE_FLUSH_INTERVAL": "0.2"},
    ) as process:
        put_iris_model(process.data_dir)
        put_model(process.data_dir, "broken", {"code/inference.py": BROKEN})
        yield process


def _model(sm, name: str, image: str, url: str) -> None:
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )


def _variant(name: str, model: str, weight: float) -> dict:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "InitialVariantWeight": weight,
    }


def _errors(server: ServerProcess, endpoint: str, variant: str) -> float:
    total = 0.0
    for line in server.metrics_text().splitlines():
        if (
            re.match(r"modelhost_invocation_[45]xx_errors_total\{", line)
            and f'endpoint="{endpoint}"' in line
            and f'variant="{variant}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _captured(data_dir: Path, endpoint: str, variant: str) -> dict[str, dict]:
    root = data_dir / "objects" / "capture" / "shadow" / endpoint / variant
    records = (
        json.loads(line) for p in root.rglob("*.jsonl") for line in p.read_text().splitlines()
    )
    return {r["eventMetadata"]["inferenceId"]: r["captureData"] for r in records}


def test_shadows_get_their_share_and_never_reach_the_client(shadowing: ServerProcess) -> None:
    sm, rt = shadowing.client("sagemaker"), shadowing.client("sagemaker-runtime")
    name = unique("shadow")
    _model(sm, name, "modelhost/sklearn", "s3://models/iris/model.tar.gz")
    _model(sm, f"{name}-broken", "modelhost/python", "s3://models/broken/model.tar.gz")
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[_variant("Production", name, 1.0)],
        ShadowProductionVariants=[
            _variant("Mirror", name, 1.0),  # every request
            _variant("Broken", f"{name}-broken", 0.5),  # half of them
        ],
        DataCaptureConfig={
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://capture/shadow",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        },
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sm, name))
    described = wait_for_status(sm, name, {"InService"})
    assert [v["VariantName"] for v in described["ShadowProductionVariants"]] == [
        "Mirror",
        "Broken",
    ]
    assert all(v["CurrentInstanceCount"] == 1 for v in described["ShadowProductionVariants"])
    requests = 300
    for i in range(requests):
        answer = rt.invoke_endpoint(
            EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2", InferenceId=f"r{i}"
        )
        assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-invoked-production-variant"] == (
            "Production"
        )
        assert answer["Body"].read().strip() == b"0"
    deadline = time.monotonic() + 30
    while len(_captured(shadowing.data_dir, name, "Mirror")) < requests:
        assert time.monotonic() < deadline, "the mirror shadow did not get every request"
        time.sleep(0.2)
    mirrored = _captured(shadowing.data_dir, name, "Mirror")
    production = _captured(shadowing.data_dir, name, "Production")
    assert set(mirrored) == set(production) == {f"r{i}" for i in range(requests)}
    assert all(mirrored[i] == production[i] for i in mirrored)
    # Half of the requests, within 4.5 standard deviations; its failures are its own.
    broken = _errors(shadowing, name, "Broken")
    assert 110 <= broken <= 190, broken
    assert _errors(shadowing, name, "Production") == 0
    assert _captured(shadowing.data_dir, name, "Broken") == {}
