"""examples/ run as a user runs them: `python examples/X.py` (or `bash`) as a subprocess,
against a bare server, with only MODELHOST_URL in the environment: objects go in and
come out through the S3 API the server serves on its own port. Each must exit 0 and
print what it says it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aws import AWS_STEERING_VARS
from tests.support.models import iris_classifier, iris_rows
from tests.support.server import ServerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("examples") / "data").start()
    yield server
    server.stop()


def _run(server: ServerProcess, *command: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in AWS_STEERING_VARS}
    env.pop("AWS_ACCESS_KEY_ID", None)  # the examples bring their own
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env.update(
        MODELHOST_URL=server.url,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        COLUMNS="200",
    )
    result = subprocess.run(
        command, cwd=EXAMPLES.parent, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_streaming(server: ServerProcess) -> None:
    out = _run(server, sys.executable, "examples/streaming.py")
    assert out.splitlines() == ["streamed one word at a time ", "6 parts"]


def test_async_inference(server: ServerProcess) -> None:
    out = _run(server, sys.executable, "examples/async_inference.py")
    assert "queued; the result will be at s3://examples/async/out/" in out
    assert out.splitlines()[-1] == "predictions: ['0', '2']"


def test_batch_transform(server: ServerProcess) -> None:
    out = _run(server, sys.executable, "examples/batch_transform.py")
    assert out.splitlines() == ["part-0.csv -> ['0', '1']", "part-1.csv -> ['2']"]


def test_recommender(server: ServerProcess) -> None:
    out = _run(server, sys.executable, "examples/recommender.py")
    lines = out.splitlines()
    assert lines and lines[0].split()[0] in ("ml.c5.large", "ml.m5.large")
    assert "invocations/min" in lines[0] and "/hour" in lines[0]


def test_deploy_cli(server: ServerProcess) -> None:
    out = _run(server, "bash", "examples/deploy_cli.sh")
    setosa = int(iris_classifier().predict(iris_rows(1))[0])
    lines = out.splitlines()
    assert f"{setosa}" in lines
    assert f'{{"species": [{setosa}]}}' in lines
    assert "deleting example-cli" in lines


def test_model_registry(server: ServerProcess) -> None:
    out = _run(server, sys.executable, "examples/model_registry.py")
    assert out.splitlines() == [
        "deploying arn:aws:sagemaker:us-east-1:000000000000:model-package/example-registry/2",
        "prediction: 0",
    ]
