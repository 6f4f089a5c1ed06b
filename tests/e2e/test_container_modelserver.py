"""The built-in model server as an image: `modelhost images build` makes it with no
registry (base from the Debian mirror, wheels fetched on the host), and the same endpoint
config serves the same predictions whether its instance is a process or a container.

Two servers, one engine: the one given the podman service finds the image there and runs
the model in a container; the other has no engine and runs the same model as a process.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from modelhost.instances import scope_key
from tests.support.cli import run_cli
from tests.support.containers import (
    containers_labelled,
    engine_usable,
    podman,
    podman_service,
    wait_until,
)
from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import iris_model_bytes, put_iris_model, put_model, put_model_prefix
from tests.support.network import UNAUTHORIZED, primary_address, refused, status
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.timeout(900)

IMAGE = "modelhost-test/sklearn:1"
ROWS = "5.1,3.5,1.4,0.2\n6.7,3.1,4.4,1.4\n6.3,3.3,6.0,2.5\n5.9,3.0,5.1,1.8\n4.9,2.4,3.3,1.0\n"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    engine_usable()
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        built = run_cli(
            *("images", "build", "--framework", "sklearn", "--tag", IMAGE),
            env={"MODELHOST_CONTAINER_HOST": url},
            timeout=840,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        assert f"built {IMAGE}" in built.stdout
        yield url


@pytest.fixture(scope="module")
def in_containers(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("containers") / "data"
    with running_server(data, env={"MODELHOST_CONTAINER_HOST": engine}) as server:
        yield server


@pytest.fixture(scope="module")
def in_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("processes")
    env = {"MODELHOST_CONTAINER_HOST": f"unix://{folder}/no-engine.sock"}
    with running_server(folder / "data", env=env) as server:
        yield server


def _containers(server: ServerProcess, name: str) -> list[dict[str, object]]:
    scope = f"modelhost.scope={scope_key(server.data_dir.resolve())}"
    return [
        c
        for c in containers_labelled(scope)
        if str(c["Labels"]["modelhost.instance"]).startswith(f"{name}-")  # type: ignore[index]
    ]


def _predict(server: ServerProcess, name: str, body: str, content_type: str) -> tuple[str, bytes]:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, ContentType=content_type, Accept="application/json", Body=body
    )
    return answer["ContentType"], answer["Body"].read()


def test_same_endpoint_config_gives_the_same_predictions_in_a_container(
    in_containers: ServerProcess, in_processes: ServerProcess
) -> None:
    names = {}
    for server in (in_containers, in_processes):
        names[server] = deploy(
            server.client("sagemaker"), put_iris_model(server.data_dir), image=IMAGE, timeout_s=180
        )
    # The image ran in a container on one server, as a process on the other.
    [container] = _containers(in_containers, names[in_containers])
    assert container["Image"].endswith(IMAGE)  # type: ignore[union-attr]
    assert _containers(in_processes, names[in_processes]) == []

    payloads = [
        (ROWS, "text/csv"),
        (
            json.dumps([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]),
            "application/json",
        ),
    ]
    for body, content_type in payloads:
        from_container = _predict(in_containers, names[in_containers], body, content_type)
        assert from_container == _predict(in_processes, names[in_processes], body, content_type)
    # The predictions are iris classes, not an echo: one per row, three species in five.
    classes = json.loads(_predict(in_containers, names[in_containers], ROWS, "text/csv")[1])
    assert len(classes) == 5 and len(set(classes)) == 3


def test_a_multi_model_endpoint_serves_its_models_from_a_container(
    in_containers: ServerProcess,
) -> None:
    """The image's server speaks the multi-model contract: the router unpacks each model
    into the mounted model dir and the container loads it from /opt/ml/model/<name>."""
    sagemaker = in_containers.client("sagemaker")
    prefix = put_model_prefix(in_containers.data_dir, "containers-mme", 3)
    name = deploy(
        sagemaker,
        prefix,
        image=IMAGE,
        container_fields={"Mode": "MultiModel"},
        environment={"MODELHOST_MAX_LOADED_MODELS": "2"},
        timeout_s=180,
    )
    assert _containers(in_containers, name)
    runtime = in_containers.client("sagemaker-runtime")
    for _ in range(2):  # three models through a cache of two: evictions on the way
        for index in range(3):
            answer = runtime.invoke_endpoint(
                EndpointName=name,
                TargetModel=f"model-{index}.tar.gz",
                ContentType="application/json",
                Body=json.dumps([[5.1, 3.5, 1.4, 0.2]]),
            )
            assert json.loads(answer["Body"].read()) == [100 * index]


def _raw(port: int, method: str, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=ROWS if method == "POST" else None, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_server_in_the_image_refuses_a_request_without_the_instance_token(
    in_containers: ServerProcess,
) -> None:
    name = deploy(
        in_containers.client("sagemaker"),
        put_iris_model(in_containers.data_dir),
        image=IMAGE,
        timeout_s=180,
    )
    [container] = _containers(in_containers, name)
    [port] = [p["host_port"] for p in container["Ports"]]  # type: ignore[union-attr, index]
    csv = {"Content-Type": "text/csv"}
    # Straight to the container's published port, past the router: refused, whatever the path.
    assert _raw(port, "POST", "/invocations", csv) == 403
    assert _raw(port, "GET", "/ping", {}) == 403
    assert _raw(port, "POST", "/invocations", {**csv, "X-Modelhost-Instance-Token": "guess"}) == 403
    # Through the router, which holds the token, the same request is served.
    assert _predict(in_containers, name, ROWS, "text/csv")[0] == "application/json"


def test_a_container_published_on_the_advertised_address_answers_routers_only(
    engine: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With MODELHOST_INSTANCE_ADVERTISE_HOST the container's port is published on that
    address (not on loopback), and there too every path wants the instance's token."""
    address = primary_address()
    data = tmp_path_factory.mktemp("advertised-containers") / "data"
    env = {"MODELHOST_CONTAINER_HOST": engine, "MODELHOST_INSTANCE_ADVERTISE_HOST": address}
    with running_server(data, env=env) as server:
        name = deploy(
            server.client("sagemaker"), put_iris_model(server.data_dir), image=IMAGE, timeout_s=180
        )
        [container] = _containers(server, name)
        [published] = container["Ports"]  # type: ignore[misc]
        assert published["host_ip"] == address  # type: ignore[index]
        port = int(published["host_port"])  # type: ignore[index]
        for method, path, headers in UNAUTHORIZED:
            assert status(address, port, method, path, headers) == 403, (method, path, headers)
        assert refused("127.0.0.1", port)
        assert _predict(server, name, ROWS, "text/csv")[0] == "application/json"


# Iris, answering with what the model's Environment told it: proof the variable reached
# model code in a container that started before the model was known.
_GREETING_CODE = b"""
import io, json, os
import joblib, numpy
def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
def transform_fn(model, body, content_type, accept):
    text = body if isinstance(body, str) else body.decode()
    rows = numpy.loadtxt(io.StringIO(text), delimiter=",", ndmin=2)
    classes = [int(c) for c in model.predict(rows)]
    return json.dumps({"greeting": os.environ.get("GREETING"), "classes": classes}), accept
"""
SPARE = "modelhost.instance=spare"


def _deploy_serverless(sagemaker, url: str, environment: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    name = unique("sl")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url, "Environment": environment},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 2},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_for_status(sagemaker, name, {"InService", "Failed"})["EndpointStatus"] == (
        "InService"
    )
    return name


def _spares(server: ServerProcess) -> list[dict[str, object]]:
    scope = f"modelhost.scope={scope_key(server.data_dir.resolve())}"
    return [c for c in containers_labelled(scope) if c in containers_labelled(SPARE)]


def _ready_spare(server: ServerProcess, other_than: str = "") -> str:
    """The id of a spare that has its imports done (waiting until there is one)."""
    found: list[str] = []

    def ready() -> bool:
        for spare in _spares(server):
            logs = podman("logs", str(spare["Id"]), check=False)
            if spare["Id"] != other_than and "spare ready" in logs.stdout + logs.stderr:
                found.append(str(spare["Id"]))
                return True
        return False

    wait_until(ready, "a spare container with its imports done", timeout_s=120)
    return found[0]


def test_a_serverless_cold_start_takes_a_spare_container(
    engine: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = tmp_path_factory.mktemp("spares") / "data"
    env = {
        "MODELHOST_CONTAINER_HOST": engine,
        "MODELHOST_SERVERLESS_IDLE_S": "3",
        "MODELHOST_HEALTH_INTERVAL": "0.2",
    }
    server = ServerProcess(data, env=env)
    server.start()
    try:
        files = {"model.joblib": iris_model_bytes(), "code/inference.py": _GREETING_CODE}
        url = put_model(server.data_dir, "greeting", files)
        greeting = {"GREETING": "set in the model's Environment"}
        name = _deploy_serverless(server.client("sagemaker"), url, greeting)
        # The first cold start: after it, at the latest, a spare waits for the next.
        first = json.loads(_predict(server, name, ROWS, "text/csv")[1])
        assert first["greeting"] == greeting["GREETING"]
        assert len(first["classes"]) == 5 and len(set(first["classes"])) == 3
        _ready_spare(server)
        wait_until(lambda: not _containers(server, name), "the endpoint back at zero", 120)

        # The next cold start answers the same; a spare took this one or the first (the
        # deployment's own first instance leaves one behind), as the instance logs say.
        assert json.loads(_predict(server, name, ROWS, "text/csv")[1]) == first
        instance_logs = [p.read_text() for p in (server.data_dir / "logs" / name).glob("*.log")]
        assert any(f"spare assigned to instance {name}-" in text for text in instance_logs)
        # Used, it is replaced by another.
        _ready_spare(server)
    finally:
        server.stop()
    # Stopped: neither the spare nor its folders are left.
    assert containers_labelled(f"modelhost.scope={scope_key(data.resolve())}") == []
    assert not any((data / "spares").glob("*"))
