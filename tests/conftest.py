"""Shared fixtures: one real modelhost server for the whole session, and boto3 clients."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.models import put_iris_model
from tests.support.server import ServerProcess, running_server

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
    os.environ.pop(variable, None)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("server") / "data",
                        env={"MODELHOST_MODEL_TIMEOUT": "5",
                             "MODELHOST_MAX_INSTANCES": "24"}) as process:
        yield process


@pytest.fixture(scope="session")
def sagemaker(server: ServerProcess):
    return server.client("sagemaker")


@pytest.fixture(scope="session")
def runtime(server: ServerProcess):
    return server.client("sagemaker-runtime")


@pytest.fixture(scope="session")
def iris_model_url(server: ServerProcess) -> str:
    """An iris model.tar.gz in the server's embedded object store (s3:// mapped locally)."""
    return put_iris_model(server.data_dir)


_deployed: list[tuple[object, str]] = []


@pytest.fixture(autouse=True)
def _delete_endpoints_deployed_by_the_test() -> Iterator[None]:
    """Every endpoint is a live process; a test's endpoints go when the test ends, so the
    session server does not pile up dozens of them. Endpoints made by module fixtures
    exist before this snapshot and stay for the module."""
    before = len(_deployed)
    yield
    for sagemaker, name in _deployed[before:]:
        # the test may have deleted it already
        with contextlib.suppress(Exception):
            sagemaker.delete_endpoint(EndpointName=name)  # type: ignore[attr-defined]
    del _deployed[before:]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(describe, key: str, wanted: set[str], what: str, timeout_s: float = 90) -> dict:
    """Poll `describe()` until its `key` is one of `wanted`; the last description."""
    deadline = time.monotonic() + timeout_s
    while True:
        description = describe()
        if description[key] in wanted:
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} stuck in {description[key]}")
        time.sleep(0.2)


def wait_for_status(sagemaker, name: str, wanted: set[str], timeout_s: float = 90) -> dict:
    return wait_for(lambda: sagemaker.describe_endpoint(EndpointName=name), "EndpointStatus",
                    wanted, f"endpoint {name}", timeout_s)


def deploy(
    sagemaker,
    model_url: str,
    *,
    image: str = "modelhost/sklearn",
    environment: dict[str, str] | None = None,
    variants: list[tuple[str, int, float]] | None = None,
    wait: bool = True,
) -> str:
    """Model -> EndpointConfig -> Endpoint; returns the endpoint name."""
    name = unique("ep")
    container = {"Image": image, "ModelDataUrl": model_url}
    if environment:
        container["Environment"] = environment
    sagemaker.create_model(ModelName=name, PrimaryContainer=container,
                           ExecutionRoleArn="arn:aws:iam::000000000000:role/any")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": variant, "ModelName": name, "InstanceType": "ml.m5.large",
             "InitialInstanceCount": count, "InitialVariantWeight": weight}
            for variant, count, weight in (variants or [("AllTraffic", 1, 1.0)])
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    _deployed.append((sagemaker, name))
    if wait:
        wait_for_status(sagemaker, name, {"InService"})
    return name
