"""The models the tests and benchmarks deploy, packed as model.tar.gz: the iris classifier
(trained now on the dataset scikit-learn ships, no artefact in git) and small
`modelhost/python` handlers with a known cost."""

from __future__ import annotations

import io
import tarfile
from functools import cache
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


@cache
def iris_classifier() -> LogisticRegression:
    features, labels = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(features, labels)


def iris_rows(count: int = 3) -> list[list[float]]:
    features, _ = load_iris(return_X_y=True)
    picks = [0, 60, 120, 10, 70, 130][:count]
    return [list(map(float, features[i])) for i in picks]


def model_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def iris_model_bytes() -> bytes:
    buffer = io.BytesIO()
    joblib.dump(iris_classifier(), buffer)
    return buffer.getvalue()


def labelled_iris_bytes(index: int) -> bytes:
    """Iris with its classes relabelled 100*index + class, joblib-dumped: model `index` of
    a multi-model prefix, whose every answer says which model gave it."""
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels + 100 * index)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def put_model_prefix(data_dir: Path, bucket: str, count: int) -> str:
    """`count` relabelled iris models as s3://BUCKET/models/model-N.tar.gz in the embedded
    store of a server on `data_dir`: the prefix, for a MultiModel container."""
    root = data_dir / "objects" / bucket / "models"
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        data = model_tarball({"model.joblib": labelled_iris_bytes(index)})
        (root / f"model-{index}.tar.gz").write_bytes(data)
    return f"s3://{bucket}/models/"


def write_iris_tarball(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_tarball({"model.joblib": iris_model_bytes(), **(extra or {})}))
    return path


def put_model(data_dir: Path, name: str, files: dict[str, bytes]) -> str:
    """A model.tar.gz of `files` in the embedded object store of a server on `data_dir`
    (which maps s3:// onto `data_dir/objects`): its s3:// URL, for CreateModel."""
    path = data_dir / "objects" / "models" / name / "model.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_tarball(files))
    return f"s3://models/{name}/model.tar.gz"


def put_iris_model(data_dir: Path) -> str:
    """The iris model as `put_model` stores it: s3://models/iris/model.tar.gz."""
    return put_model(data_dir, "iris", {"model.joblib": iris_model_bytes()})


# A model that takes `service_s` seconds per request and no CPU: a fixed service time, for
# load that scales with instances, not with cores.
_SLEEP_CODE = """
import json, time
SERVICE_S = {service_s!r}
def model_fn(model_dir):
    return None
def input_fn(body, content_type):
    return body
def predict_fn(data, model):
    time.sleep(SERVICE_S)
    return {{"ok": True}}
def output_fn(prediction, accept):
    return json.dumps(prediction)
"""


def put_sleep_model(data_dir: Path, service_s: float) -> str:
    """A `modelhost/python` model answering each request after `service_s` seconds."""
    code = _SLEEP_CODE.format(service_s=service_s).encode()
    return put_model(data_dir, "sleep", {"code/inference.py": code})


# Burns the CPU seconds the text/plain body names, on one thread: how many cores an
# instance gets is the CPU time over the wall time the request took.
BURN_CODE = b"""
import time
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    end = time.process_time() + float(body)
    while time.process_time() < end:
        pass
    return "burnt", "text/plain"
"""


def put_burn_model(data_dir: Path) -> str:
    return put_model(data_dir, "burn", {"code/inference.py": BURN_CODE})


def put_breakable_model(data_dir: Path, name: str, marker: Path) -> str:
    """A python model whose model_fn refuses to load once `marker` exists: an endpoint
    that came up fine and whose replacements then cannot start."""
    code = f"""
import os
def model_fn(model_dir):
    if os.path.exists({str(marker)!r}):
        raise RuntimeError("model store unavailable")
    return None
def transform_fn(model, body, content_type, accept):
    return "ok", "text/plain"
""".encode()
    return put_model(data_dir, name, {"code/inference.py": code})


def put_gated_model(data_dir: Path, gate: Path) -> str:
    """A python model that answers "done" only once the file `gate` exists: requests
    held in flight for as long as a test needs them there."""
    code = f"""
import os, time
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    while not os.path.exists({str(gate)!r}):
        time.sleep(0.01)
    return "done", "text/plain"
""".encode()
    return put_model(data_dir, f"gated-{abs(hash(str(gate)))}", {"code/inference.py": code})


def put_gated_iris_model(data_dir: Path, name: str, index: int, gate: Path) -> str:
    """Relabelled iris model `index` (see `labelled_iris_bytes`) for `modelhost/sklearn`
    whose model_fn loads only once the file `gate` exists: an instance of it stays
    starting for as long as a test needs it to."""
    code = f"""
import os, time, joblib
def model_fn(model_dir):
    while not os.path.exists({str(gate)!r}):
        time.sleep(0.01)
    return joblib.load(os.path.join(model_dir, "model.joblib"))
""".encode()
    files = {"model.joblib": labelled_iris_bytes(index), "code/inference.py": code}
    return put_model(data_dir, name, files)
