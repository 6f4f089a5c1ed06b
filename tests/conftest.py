"""Shared fixtures: one real modelhost server for the whole session, and boto3 clients.
Helpers live in tests/support; this file holds fixtures only."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from tests.support.aws import AWS_STEERING_VARS, TEST_ENV
from tests.support.endpoints import deployed
from tests.support.models import put_iris_model
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.server import ServerProcess, running_server

# The tests' own boto3 clients: dummy credentials, never steered to a real account.
for variable in AWS_STEERING_VARS:
    os.environ.pop(variable, None)
for variable, value in TEST_ENV.items():
    os.environ.setdefault(variable, value)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("server") / "data",
        env={"MODELHOST_MODEL_TIMEOUT": "5", "MODELHOST_MAX_INSTANCES": "24"},
    ) as process:
        yield process


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session; tests take a fresh database each
    (`new_database`)."""
    with postgres_server() as server:
        yield server


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


@pytest.fixture(autouse=True)
def _delete_endpoints_deployed_by_the_test() -> Iterator[None]:
    """Every endpoint is a live process; a test's endpoints go when the test ends, so the
    session server does not pile up dozens of them. Endpoints made by module fixtures
    exist before this snapshot and stay for the module."""
    before = len(deployed)
    yield
    for sagemaker, name in deployed[before:]:
        # the test may have deleted it already
        with contextlib.suppress(Exception):
            sagemaker.delete_endpoint(EndpointName=name)  # type: ignore[attr-defined]
    del deployed[before:]
