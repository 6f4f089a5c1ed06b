"""Tiny real models trained at test time on datasets scikit-learn ships."""

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
