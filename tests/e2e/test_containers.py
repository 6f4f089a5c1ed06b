"""The container backend against a real podman: a bring-your-own-container image (a small
server of its own, not modelhost's) deployed with boto3 runs as SageMaker runs images,
is replaced when its container dies, and leaves no container behind.

The server finds podman through MODELHOST_CONTAINER_HOST, a `podman system service` on a
socket of the module's own; the tests skip (with the reason) where podman cannot be
installed or cannot run a container.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from modelhost.instances import scope_key
from tests.support.async_inference import deploy_async, local_path, wait_for_object
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
from tests.support.endpoints import (
    deploy,
    deployed,
    undeploy,
    unique,
    wait_for,
    wait_for_status,
)
from tests.support.models import put_iris_model, put_model
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.timeout(600)

MODEL_FILES = {"model.txt": b"weights from the artifact"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    engine_usable()
    build_image(BYOC_IMAGE, BYOC_DIR, "Containerfile", f"BASE={BASE_IMAGE}")
    with podman_service(tmp_path_factory.mktemp("podman")) as url:
        yield url


def _server_env(engine: str) -> dict[str, str]:
    return {"MODELHOST_CONTAINER_HOST": engine, "MODELHOST_MODEL_TIMEOUT": "10"}


@pytest.fixture(scope="module")
def container_server(
    engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("containers") / "data", env=_server_env(engine)
    ) as process:
        yield process


def _scope(server: ServerProcess) -> str:
    return f"modelhost.scope={scope_key(server.data_dir.resolve())}"


def _of_endpoint(server: ServerProcess, name: str) -> list[dict[str, object]]:
    return [
        c
        for c in containers_labelled(_scope(server))
        if str(c["Labels"]["modelhost.instance"]).startswith(f"{name}-")
    ]  # type: ignore[index]


def _running(server: ServerProcess, name: str) -> list[dict[str, object]]:
    return [c for c in _of_endpoint(server, name) if c["State"] == "running"]


def _invoke(runtime, name: str, body: dict[str, object] | None = None) -> dict[str, object]:
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps(body or {"x": 1})
    )
    return dict(json.loads(answer["Body"].read()))


def test_byoc_image_runs_as_sagemaker_runs_it(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = deploy(
        sagemaker,
        url,
        image=BYOC_IMAGE,
        environment={"GREETING": "hello"},
        variants=[("Heavy", 2, 2.0), ("Light", 1, 1.0)],
        timeout_s=120,
    )

    answers, variants = [], []
    for i in range(40):
        reply = runtime.invoke_endpoint(
            EndpointName=name, ContentType="application/json", Body=json.dumps({"n": i})
        )
        answers.append(json.loads(reply["Body"].read()))
        variants.append(reply["InvokedProductionVariant"])
    assert {a["server"] for a in answers} == {"byoc"}
    first = answers[0]
    assert first["args"] == ["serve"]
    assert first["model"] == "weights from the artifact"
    assert first["greeting"] == "hello"
    assert first["port"] == "8080"
    assert first["model_dir"] == "/opt/ml/model"
    assert [a["echo"] for a in answers] == [{"n": i} for i in range(40)]
    # Both variants get traffic, and every one of the three containers serves.
    assert set(variants) == {"Heavy", "Light"}
    assert len({a["hostname"] for a in answers}) == 3

    running = _running(container_server, name)
    assert len(running) == 3
    for container in running:
        ports = container["Ports"]
        assert ports and all(
            p["host_ip"] == "127.0.0.1" and p["container_port"] == 8080 for p in ports
        ), ports  # type: ignore[union-attr, index]
        # The artifacts are mounted read-only.
        wrote = podman(
            "exec", str(container["Id"]), "sh", "-c", "echo x > /opt/ml/model/new", check=False
        )
        assert wrote.returncode != 0 and "Read-only" in wrote.stderr
    logs = container_server.data_dir / "logs" / name
    wait_until(
        lambda: (
            sum("byoc serving /opt/ml/model" in log.read_text() for log in logs.glob("*.log")) == 3
        ),
        "the containers' logs",
    )

    undeploy(sagemaker, name)
    assert _of_endpoint(container_server, name) == []


def test_killed_container_is_replaced_while_requests_keep_succeeding(
    container_server: ServerProcess,
) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime", retries=3)
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = deploy(
        sagemaker, url, image=BYOC_IMAGE, variants=[("AllTraffic", 2, 1.0)], timeout_s=120
    )
    before = {str(c["Id"]) for c in _running(container_server, name)}
    assert len(before) == 2

    failures: list[str] = []
    succeeded = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                _invoke(runtime, name)
                succeeded[0] += 1
            except ClientError as exc:
                failures.append(str(exc))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        wait_until(lambda: succeeded[0] >= 20, "requests before the kill")
        victim = sorted(before)[0]
        podman("kill", victim)
        wait_until(
            lambda: (
                len(ids := {str(c["Id"]) for c in _running(container_server, name)}) == 2
                and victim not in ids
            ),
            "a replacement container",
            timeout_s=90,
        )
        at_replacement = succeeded[0]
        wait_until(lambda: succeeded[0] >= at_replacement + 20, "requests after the kill")
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert victim not in {str(c["Id"]) for c in _of_endpoint(container_server, name)}
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def test_missing_image_fails_the_endpoint_naming_it(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    image = "localhost/modelhost-test/absent:1"
    name = deploy(sagemaker, url, image=image, wait=False)
    status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
    assert status["EndpointStatus"] == "Failed"
    assert image in status["FailureReason"]
    assert _of_endpoint(container_server, name) == []


def test_ecr_uri_finds_the_local_image_by_repository_and_tag(
    container_server: ServerProcess,
) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = deploy(
        sagemaker,
        url,
        image=f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{BYOC_IMAGE}",
        timeout_s=120,
    )
    assert _invoke(runtime, name)["server"] == "byoc"


def test_stop_and_crash_leave_no_container_behind(engine: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, env=_server_env(engine)).start()
    try:
        sagemaker = server.client("sagemaker")
        url = put_model(data, unique("byoc"), MODEL_FILES)
        name = deploy(sagemaker, url, image=BYOC_IMAGE, timeout_s=120)
        assert len(_running(server, name)) == 1
        server.stop()
        assert containers_labelled(_scope(server)) == []

        # A crash leaves the container; the next server on the data dir removes it and
        # starts the endpoint's instance anew.
        server = server.restarted()
        wait_until(lambda: len(_running(server, name)) == 1, "the instance after a restart")
        orphan = {str(c["Id"]) for c in _running(server, name)}
        server.kill()
        assert {str(c["Id"]) for c in containers_labelled(_scope(server))} == orphan
        server = server.restarted()
        wait_until(
            lambda: (
                len(_running(server, name)) == 1
                and not orphan & {str(c["Id"]) for c in _of_endpoint(server, name)}
            ),
            "the leftover replaced",
        )
        assert _invoke(server.client("sagemaker-runtime"), name)["server"] == "byoc"
    finally:
        server.stop()
    assert containers_labelled(_scope(server)) == []


def test_image_without_an_engine_fails_saying_how_to_get_one(tmp_path: Path) -> None:
    env = {"MODELHOST_CONTAINER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    with running_server(tmp_path / "data", env=env) as server:
        sagemaker = server.client("sagemaker")
        url = put_model(server.data_dir, unique("byoc"), MODEL_FILES)
        name = deploy(sagemaker, url, image="team/own-server:1", wait=False)
        status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=60)
        assert status["EndpointStatus"] == "Failed"
        assert "no container engine" in status["FailureReason"]
        assert "podman" in status["FailureReason"]
        # modelhost's own images still run on the built-in model server.
        deploy(sagemaker, put_iris_model(server.data_dir))


def _deploy_serverless(sagemaker, url: str, memory_mb: int) -> str:
    name = unique("sl")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": BYOC_IMAGE, "ModelDataUrl": url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "ServerlessConfig": {"MemorySizeInMB": memory_mb, "MaxConcurrency": 1},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    assert (
        wait_for_status(sagemaker, name, {"InService", "Failed"})["EndpointStatus"] == "InService"
    )
    return name


def test_serverless_container_holds_its_memory_size(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = _deploy_serverless(sagemaker, url, 1024)
    # A cold start on the first request: the container starts then.
    assert _invoke(runtime, name, {"allocate_mb": 100})["server"] == "byoc"
    [container] = _running(container_server, name)
    limit = podman("inspect", "--format", "{{.HostConfig.Memory}}", str(container["Id"]))
    assert int(limit.stdout) == 1024 * 1024**2

    # Past its memory size the kernel kills it; the request fails, the next one gets a
    # new container.
    with pytest.raises(ClientError):
        _invoke(runtime, name, {"allocate_mb": 1500})
    wait_until(
        lambda: container["Id"] not in {c["Id"] for c in _of_endpoint(container_server, name)},
        "the killed container removed",
    )
    assert _invoke(runtime, name)["server"] == "byoc"
    assert str(container["Id"]) not in {str(c["Id"]) for c in _running(container_server, name)}


def test_transform_job_runs_on_the_image(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    model = unique("byoc")
    sagemaker.create_model(
        ModelName=model,
        PrimaryContainer={
            "Image": BYOC_IMAGE,
            "ModelDataUrl": put_model(container_server.data_dir, model, MODEL_FILES),
        },
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    objects = container_server.data_dir / "objects"
    for index in range(2):
        source = objects / "transform-in" / model / f"part-{index}.json"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(json.dumps({"part": index}))
    job = unique("tj")
    sagemaker.create_transform_job(
        TransformJobName=job,
        ModelName=model,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://transform-in/{model}/"}
            },
            "ContentType": "application/json",
            "SplitType": "None",
        },
        TransformOutput={"S3OutputPath": f"s3://transform-out/{model}/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    status = wait_for(
        lambda: sagemaker.describe_transform_job(TransformJobName=job),
        "TransformJobStatus",
        {"Completed", "Failed", "Stopped"},
        f"job {job}",
        timeout_s=120,
    )
    assert status["TransformJobStatus"] == "Completed", status.get("FailureReason")
    for index in range(2):
        output = objects / "transform-out" / model / f"part-{index}.json.out"
        answer = json.loads(output.read_text())
        assert answer["server"] == "byoc" and answer["echo"] == {"part": index}
    # It ran in a container (its log is the container's output), which went with the job.
    wait_until(
        lambda: any(
            "byoc serving" in log.read_text()
            for log in (container_server.data_dir / "logs" / job).glob("*.log")
        ),
        "the job's container log",
    )
    wait_until(lambda: _of_endpoint(container_server, job) == [], "the job's container gone")


def test_container_that_stops_answering_is_replaced(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = deploy(sagemaker, url, image=BYOC_IMAGE, timeout_s=120)
    [frozen] = _running(container_server, name)
    podman("pause", str(frozen["Id"]))  # alive to the engine, silent to its pings
    wait_until(
        lambda: (
            [str(c["Id"]) for c in _running(container_server, name)]
            not in ([], [str(frozen["Id"])])
        ),
        "a replacement for the paused container",
        timeout_s=90,
    )
    wait_until(
        lambda: (
            str(frozen["Id"]) not in {str(c["Id"]) for c in _of_endpoint(container_server, name)}
        ),
        "the paused container removed",
    )
    assert _invoke(runtime, name)["server"] == "byoc"


def test_gpu_instance_type_on_a_host_without_gpus_fails_saying_so(
    container_server: ServerProcess,
) -> None:
    if list(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this host has GPUs: the refusal is for hosts without them")
    sagemaker = container_server.client("sagemaker")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = deploy(sagemaker, url, image=BYOC_IMAGE, instance_type="ml.g5.xlarge", wait=False)
    status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
    assert status["EndpointStatus"] == "Failed"
    reason = status["FailureReason"]
    assert "ml.g5.xlarge has 1 GPU(s) (NVIDIA A10G)" in reason
    assert "this host has none" in reason
    assert _of_endpoint(container_server, name) == []


def test_container_past_its_memory_limit_is_killed_replaced_and_reported(
    container_server: ServerProcess,
) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    # ml.c5.large: 4 GiB, the catalog's smallest.
    name = deploy(sagemaker, url, image=BYOC_IMAGE, instance_type="ml.c5.large", timeout_s=120)
    [container] = _running(container_server, name)
    limit = podman("inspect", "--format", "{{.HostConfig.Memory}}", str(container["Id"]))
    assert int(limit.stdout) == 4 * 1024**3

    with pytest.raises(ClientError):
        _invoke(runtime, name, {"allocate_mb": 4600})
    wait_until(
        lambda: (
            len(ids := {str(c["Id"]) for c in _running(container_server, name)}) == 1
            and str(container["Id"]) not in ids
        ),
        "a replacement for the killed container",
        timeout_s=90,
    )
    assert _invoke(runtime, name)["server"] == "byoc"
    # Reported: in the dead instance's log, the server's log and the replacement metric.
    said = "container exited with code 137, killed for exceeding its memory limit of 4096 MiB"
    logs = container_server.data_dir / "logs" / name
    wait_until(
        lambda: any(said in log.read_text() for log in logs.glob("*.log")),
        "the OOM kill in the instance log",
    )
    assert said in container_server.log()
    metric = f'modelhost_instance_replacements_total{{endpoint="{name}",variant="AllTraffic"}} '
    [line] = [x for x in container_server.metrics_text().splitlines() if x.startswith(metric)]
    assert float(line.split()[-1]) >= 1
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def test_async_endpoint_runs_on_the_image(container_server: ServerProcess) -> None:
    sagemaker = container_server.client("sagemaker")
    runtime = container_server.client("sagemaker-runtime")
    url = put_model(container_server.data_dir, unique("byoc"), MODEL_FILES)
    name = deploy_async(sagemaker, url, image=BYOC_IMAGE)
    source = local_path(container_server.data_dir, f"s3://async-in/{name}/request.json")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(json.dumps({"asked": "async"}))
    answer = runtime.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=f"s3://async-in/{name}/request.json",
        ContentType="application/json",
    )
    found = wait_for_object(
        container_server.data_dir, answer["OutputLocation"], answer["FailureLocation"]
    )
    assert found == answer["OutputLocation"]
    result = json.loads(local_path(container_server.data_dir, found).read_bytes())
    assert result["server"] == "byoc" and result["echo"] == {"asked": "async"}
    assert len(_running(container_server, name)) == 1
