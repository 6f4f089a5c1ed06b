"""Fixtures: the iris model, trained at test time, and one shared sklearn server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.modelserver import ModelServerProcess, start


@pytest.fixture(scope="session")
def iris() -> tuple[object, object]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


@pytest.fixture(scope="session")
def iris_model(iris: tuple[object, object]) -> object:
    from sklearn.linear_model import LogisticRegression

    x, y = iris
    return LogisticRegression(max_iter=1000).fit(x, y)


@pytest.fixture(scope="session")
def iris_dir(tmp_path_factory: pytest.TempPathFactory, iris_model: object) -> Path:
    """A model dir with the iris LogisticRegression as model.joblib and no code."""
    import joblib

    model_dir = tmp_path_factory.mktemp("iris")
    joblib.dump(iris_model, model_dir / "model.joblib")
    return model_dir


@pytest.fixture(scope="session")
def sklearn_server(
    iris_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServerProcess]:
    server = start(
        iris_dir, tmp_path_factory.mktemp("logs") / "sklearn.log", MODELHOST_FRAMEWORK="sklearn"
    )
    yield server
    server.stop()
