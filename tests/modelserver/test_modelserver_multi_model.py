"""The model server in multi-model mode: SageMaker's `/models` contract, spoken to
directly, as the router (or any client of a BYOC multi-model image) speaks it."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest

from tests.support.models import iris_classifier, iris_rows
from tests.support.modelserver import ModelServerProcess, start

ROWS = json.dumps(iris_rows(3))


@pytest.fixture
def server(tmp_path: Path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        joblib.dump(iris_classifier(), tmp_path / name / "model.joblib")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.joblib").write_bytes(b"not a model")
    process = start(
        tmp_path,
        tmp_path / "server.log",
        MODELHOST_FRAMEWORK="sklearn",
        SAGEMAKER_MULTI_MODEL="true",
    )
    yield process, tmp_path
    process.stop()


def _load(server: ModelServerProcess, name: str, url: Path) -> int:
    """POST /models; the first load imports sklearn, seconds on a busy machine."""
    body = json.dumps({"model_name": name, "url": str(url)})
    headers = {"Content-Type": "application/json"}
    return server.request("POST", "/models", body, headers, timeout=120).status


def test_models_load_list_invoke_unload(server) -> None:
    process, root = server
    assert process.request("GET", "/ping").status == 200
    assert json.loads(process.request("GET", "/models").body) == {"models": []}
    assert _load(process, "a", root / "a") == 200
    assert _load(process, "a", root / "a") == 409
    assert _load(process, "b", root / "b") == 200
    listed = json.loads(process.request("GET", "/models").body)["models"]
    assert {m["modelName"] for m in listed} == {"a", "b"}
    described = json.loads(process.request("GET", "/models/a").body)
    assert described == {"modelName": "a", "modelUrl": str(root / "a")}
    answer = process.request("POST", "/models/a/invoke", ROWS, {"Content-Type": "application/json"})
    assert answer.status == 200 and json.loads(answer.body) == [0, 1, 2]
    assert process.request("DELETE", "/models/a").status == 200
    assert process.request("GET", "/models/a").status == 404
    assert process.request("DELETE", "/models/a").status == 404
    gone = process.request("POST", "/models/a/invoke", ROWS, {"Content-Type": "application/json"})
    assert gone.status == 404
    assert process.request("POST", "/invocations", ROWS).status == 404


def test_a_model_that_fails_to_load_is_a_500_naming_it(server) -> None:
    process, root = server
    answer = process.request(
        "POST",
        "/models",
        json.dumps({"model_name": "broken", "url": str(root / "broken")}),
        {"Content-Type": "application/json"},
    )
    assert answer.status == 500 and "broken" in answer.text
    assert _load(process, "nowhere", root / "missing") == 404
    assert process.request("POST", "/models", b"{}").status == 400
    assert process.request("GET", "/ping").status == 200
