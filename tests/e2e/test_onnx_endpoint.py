"""The modelhost/onnx image end to end: an iris model converted with skl2onnx at test time,
deployed through the API and invoked with boto3."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.endpoints import deploy
from tests.support.models import iris_classifier, iris_rows, put_model

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")
skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed (the onnx extra)")


def test_onnx_model_serves_through_the_router(server, sagemaker, runtime) -> None:
    rows = iris_rows(3)
    onnx_model = skl2onnx.to_onnx(iris_classifier(), np.asarray(rows[:1], dtype=np.float32))
    url = put_model(server.data_dir, "onnx", {"model.onnx": onnx_model.SerializeToString()})
    name = deploy(sagemaker, url, image="modelhost/onnx")
    answer = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(rows),
    )
    assert json.loads(answer["Body"].read()) == iris_classifier().predict(rows).tolist()
