"""Multi-container models on the container backend, on a real podman: each container of
the model is a container of its own (the tests' BYOC image, which answers JSON naming what
it was given and echoing its request), chained as a serial pipeline or picked by
TargetContainerHostname, each holding an even share of the instance type."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from modelhost.instances import scope_key
from tests.support.containers import (
    BASE_IMAGE,
    BYOC_DIR,
    BYOC_IMAGE,
    build_image,
    containers_labelled,
    engine_usable,
    podman,
    podman_service,
    wait_until,
)
from tests.support.endpoints import deploy_containers, undeploy, unique
from tests.support.models import put_model
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def container_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    engine_usable()
    build_image(BYOC_IMAGE, BYOC_DIR, "Containerfile", f"BASE={BASE_IMAGE}")
    with (
        podman_service(tmp_path_factory.mktemp("podman")) as url,
        running_server(
            tmp_path_factory.mktemp("pipelines") / "data",
            env={"MODELHOST_CONTAINER_HOST": url, "MODELHOST_MODEL_TIMEOUT": "10"},
        ) as process,
    ):
        yield process


def _containers(server: ServerProcess) -> list[dict]:
    return [
        {
            "ContainerHostname": hostname,
            "Image": BYOC_IMAGE,
            "ModelDataUrl": put_model(
                server.data_dir, unique(hostname), {"model.txt": hostname.encode()}
            ),
            "Environment": {"GREETING": f"from {hostname}"},
        }
        for hostname in ("first", "second")
    ]


def _of_endpoint(server: ServerProcess, name: str) -> list[dict]:
    scope = f"modelhost.scope={scope_key(server.data_dir.resolve())}"
    return [
        c
        for c in containers_labelled(scope)
        if str(c["Labels"]["modelhost.instance"]).startswith(f"{name}-")  # type: ignore[index]
    ]


def test_serial_pipeline_of_containers(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    name = deploy_containers(sagemaker, _containers(container_server))

    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps({"n": 7})
    )
    last = json.loads(answer["Body"].read())
    # The second container answered what the first answered to the request.
    assert (last["model"], last["greeting"]) == ("second", "from second")
    first = last["echo"]
    assert (first["model"], first["greeting"]) == ("first", "from first")
    assert first["echo"] == {"n": 7}

    running = [c for c in _of_endpoint(container_server, name) if c["State"] == "running"]
    assert sorted(str(c["Labels"]["modelhost.instance"]).rsplit("-", 1)[1] for c in running) == [  # type: ignore[index]
        "first",
        "second",
    ]
    # ml.m5.large (2 vCPUs, 8 GiB) split between the two: the instance holds its type.
    for container in running:
        limits = podman(
            "inspect",
            "--format",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
            str(container["Id"]),
        ).stdout.split()
        assert int(limits[1]) == 4 * 1024**3
        assert int(limits[0]) <= 1_000_000_000

    undeploy(sagemaker, name)
    wait_until(lambda: _of_endpoint(container_server, name) == [], "the containers removed")


def test_direct_container_by_hostname(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    name = deploy_containers(sagemaker, _containers(container_server), mode="Direct")
    for hostname in ("first", "second"):
        answer = runtime.invoke_endpoint(
            EndpointName=name,
            ContentType="application/json",
            TargetContainerHostname=hostname,
            Body=json.dumps({"to": hostname}),
        )
        reply = json.loads(answer["Body"].read())
        assert (reply["model"], reply["echo"]) == (hostname, {"to": hostname})
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=name, ContentType="application/json", Body=json.dumps({})
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationError"
    undeploy(sagemaker, name)
