"""Instances on an address other servers can reach (MODELHOST_INSTANCE_ADVERTISE_HOST):
bound there and only there, published in the instance registry with it, and answering
nobody but a router, whatever the path."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from modelhost.config import Settings
from tests.support.endpoints import deploy
from tests.support.models import put_iris_model
from tests.support.network import UNAUTHORIZED, primary_address, refused, status
from tests.support.processes import instance_processes
from tests.support.server import ServerProcess, running_server

ROWS = "5.1,3.5,1.4,0.2\n6.7,3.1,4.4,1.4\n6.3,3.3,6.0,2.5"


@pytest.fixture(scope="module")
def address() -> str:
    return primary_address()


@pytest.fixture(scope="module")
def server(address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("advertised") / "data"
    with running_server(data, env={"MODELHOST_INSTANCE_ADVERTISE_HOST": address}) as server:
        yield server


def test_a_process_instance_listens_on_the_advertised_address_only(
    server: ServerProcess, address: str
) -> None:
    name = deploy(server.client("sagemaker"), put_iris_model(server.data_dir))
    [instance] = instance_processes(server.pid)
    # Reachable on the machine's address (what another server dials), not on loopback.
    assert status(address, instance.port, "GET", "/ping", {}) == 403
    assert refused("127.0.0.1", instance.port)
    runtime = server.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=ROWS
    )
    assert len(json.loads(answer["Body"].read())) == 3


def test_every_instance_path_refuses_a_request_without_the_token(
    server: ServerProcess, address: str
) -> None:
    """Bound beyond loopback, the instance is reachable by anyone on the network; its
    token turns them away before any path is looked at, and the router still gets in."""
    name = deploy(server.client("sagemaker"), put_iris_model(server.data_dir))
    ports = {p.port for p in instance_processes(server.pid)}
    runtime = server.client("sagemaker-runtime")
    for port in ports:
        for method, path, headers in UNAUTHORIZED:
            assert status(address, port, method, path, headers) == 403, (method, path, headers)
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=ROWS
    )
    assert len(json.loads(answer["Body"].read())) == 3
    streamed = runtime.invoke_endpoint_with_response_stream(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=ROWS
    )
    parts = b"".join(e["PayloadPart"]["Bytes"] for e in streamed["Body"] if "PayloadPart" in e)
    assert len(json.loads(parts)) == 3


def test_the_address_must_be_one_ip_address_of_the_machine(tmp_path) -> None:
    for wrong in ("example.com", "0.0.0.0", "::", "10.0.0.300"):
        with pytest.raises(ValueError, match="MODELHOST_INSTANCE_ADVERTISE_HOST"):
            Settings(data_dir=tmp_path, instance_host=wrong)
    assert Settings(data_dir=tmp_path).instance_host == "127.0.0.1"
