"""User code in ``code/``: custom handlers, context, transform_fn, errors, slow models."""

from __future__ import annotations

import json
import shutil
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.modelserver import ModelServerProcess, start

INFERENCE = """
import json
import time

import joblib
import numpy as np

from helper import double  # a sibling module: the code dir is on sys.path


class TeapotError(Exception):
    status_code = 418


def model_fn(model_dir, context):
    return {"clf": joblib.load(f"{model_dir}/model.joblib"),
            "seen_dir": context.system_properties["model_dir"]}


def input_fn(request_body, content_type, context):
    if content_type != "application/json":
        raise ValueError(f"only JSON, not {content_type}")
    return {"rows": np.asarray(json.loads(request_body)),
            "attrs": context.custom_attributes or "",
            "body_type": type(request_body).__name__}


def predict_fn(data, model):
    attrs = data["attrs"]
    if attrs == "raise=value":
        raise ValueError("bad shape")
    if attrs == "raise=teapot":
        raise TeapotError("short and stout")
    if attrs == "raise=exit":
        raise SystemExit(3)
    if attrs.startswith("sleep="):
        time.sleep(float(attrs[6:]))
    return {"labels": model["clf"].predict(double(data["rows"]) / 2),
            "attrs": attrs, "body_type": data["body_type"], "seen_dir": model["seen_dir"]}


def output_fn(prediction, accept, context):
    if prediction["attrs"]:
        context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes",
                                    "echo=" + prediction["attrs"])
    if accept == "text/plain":
        return " ".join(map(str, prediction["labels"])), "text/plain"
    return json.dumps({"labels": prediction["labels"].tolist(),
                       "body_type": prediction["body_type"],
                       "seen_dir": prediction["seen_dir"],
                       "accept": accept})
"""

TRANSFORM = """
import json


def model_fn(model_dir):
    return lambda rows: [sum(r) for r in rows]


def transform_fn(model, request_body, content_type, accept):
    rows = json.loads(request_body)
    body = json.dumps({"sums": model(rows), "content_type": content_type, "accept": accept})
    return body.encode(), "application/vnd.sums+json"
"""

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


@pytest.fixture(scope="module")
def user_dir(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("user")
    shutil.copy(iris_dir / "model.joblib", model_dir / "model.joblib")
    code = model_dir / "code"
    code.mkdir()
    (code / "inference.py").write_text(INFERENCE)
    (code / "transform.py").write_text(TRANSFORM)
    (code / "helper.py").write_text("def double(x):\n    return x * 2\n")
    (code / "requirements.txt").write_text("nonexistent-package==9.9\n")
    return model_dir


@pytest.fixture(scope="module")
def user_server(user_dir: Path) -> Iterator[ModelServerProcess]:
    server = start(
        user_dir,
        user_dir / "server.log",
        MODELHOST_FRAMEWORK="sklearn",
        SAGEMAKER_MODEL_SERVER_WORKERS="2",
    )
    yield server
    server.stop()


def test_custom_handlers_with_context(user_server, user_dir):
    resp = user_server.invoke(json.dumps(ROWS), "application/json", accept="application/json")
    assert resp.status == 200, resp.text
    out = json.loads(resp.body)
    assert out["labels"] == [0, 1, 2]
    assert out["body_type"] == "str"  # JSON and CSV bodies reach user code as str, like the toolkit
    assert out["seen_dir"] == str(user_dir)
    assert resp.headers["content-type"] == "application/json"
    assert "x-amzn-sagemaker-custom-attributes" not in resp.headers
    # the model server installs nothing itself (the process backend did, before it
    # started): it says which environment the packages come from
    assert "requirements.txt: packages come from" in user_server.log()


def test_custom_attributes_round_trip(user_server):
    resp = user_server.invoke(json.dumps(ROWS), "application/json", custom_attributes="trace=7")
    assert resp.status == 200
    assert resp.headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace=7"


def test_output_fn_tuple_sets_content_type(user_server):
    resp = user_server.invoke(json.dumps(ROWS), "application/json", accept="text/plain")
    assert resp.status == 200
    assert resp.headers["content-type"] == "text/plain"
    assert resp.text == "0 1 2"


def test_user_input_fn_decides_content_types(user_server):
    resp = user_server.invoke("1,2,3,4", "text/csv")
    assert resp.status == 500
    assert resp.text.strip() == "ValueError: only JSON, not text/csv"


def test_handler_errors_map_to_status(user_server):
    body = json.dumps(ROWS)
    value = user_server.invoke(body, "application/json", custom_attributes="raise=value")
    assert value.status == 500
    assert value.text.strip() == "ValueError: bad shape"
    teapot = user_server.invoke(body, "application/json", custom_attributes="raise=teapot")
    assert teapot.status == 418
    assert "TeapotError: short and stout" in teapot.text
    exited = user_server.invoke(body, "application/json", custom_attributes="raise=exit")
    assert exited.status == 500
    assert "SystemExit" in exited.text
    assert user_server.alive()
    assert "Traceback" in user_server.log()  # 5xx are logged with their traceback
    assert user_server.invoke(body, "application/json").status == 200


def test_ping_answers_while_models_run(user_server):
    """Two slow calls run at once on 2 workers, and /ping stays fast meanwhile."""
    body = json.dumps(ROWS)
    results: list[int] = []

    def slow() -> None:
        resp = user_server.invoke(
            body, "application/json", custom_attributes="sleep=1.0", fresh=True
        )
        results.append(resp.status)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.2)
    ping_started = time.monotonic()
    assert user_server.request("GET", "/ping", fresh=True, timeout=2).status == 200
    assert time.monotonic() - ping_started < 0.5
    for t in threads:
        t.join(10)
    assert results == [200, 200]
    assert time.monotonic() - started < 1.9  # concurrent, not one after the other
    params = json.loads(user_server.request("GET", "/execution-parameters").body)
    assert params["MaxConcurrentTransforms"] == 2


def test_transform_fn_with_python_framework(user_dir):
    server = start(
        user_dir,
        user_dir / "transform.log",
        MODELHOST_FRAMEWORK="python",
        SAGEMAKER_PROGRAM="transform",
    )
    try:
        resp = server.invoke("[[1, 2], [3, 4.5]]", "application/json; charset=utf-8", "*/*")
        assert resp.status == 200, resp.text
        assert resp.headers["content-type"] == "application/vnd.sums+json"
        assert json.loads(resp.body) == {
            "sums": [3, 7.5],
            "content_type": "application/json",
            "accept": "application/json",
        }
        # transform_fn sees any type; here it fails to parse it, which is the model's error.
        bad = server.invoke(b"\x00\x01", "application/octet-stream")
        assert bad.status == 500
        assert server.alive()
    finally:
        server.stop()


def test_python_framework_callable_model_without_predict_fn(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("callable")
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(
        textwrap.dedent("""
        def model_fn(model_dir):
            return lambda x: x * 10
    """)
    )
    server = start(model_dir, model_dir / "server.log")  # MODELHOST_FRAMEWORK defaults to python
    try:
        resp = server.invoke("1,2\n3,4\n", "text/csv")
        assert resp.status == 200
        assert resp.text == "10.0,20.0\n30.0,40.0\n"
    finally:
        server.stop()
