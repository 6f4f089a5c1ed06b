"""The `ray` instance backend on a real multi-node Ray cluster on this machine.

The cluster (`ray.cluster_utils.Cluster`: a head and two more nodes, one of them with a
fake GPU and the `ml.g5` family resource) is started by the test module, a real
`modelhost server` connects to it with `--instance-backend ray --ray-address`, and model
data lives on a moto S3 server: each actor downloads and unpacks it on its own node.
Which node runs an instance is read from the process tree: a model server's ancestors
include the raylet of the node that placed it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from tests.support.autoscaling import FAST_AUTOSCALING, register, resource_id
from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import iris_classifier, iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.processes import wait_until
from tests.support.server import ServerProcess
from tests.support.traffic import Traffic, error_codes

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
cluster_utils = pytest.importorskip("ray.cluster_utils")

# Ray's own process handles (ConsolePopen) for the processes of a node the test removes
# can be collected before Ray has reaped every one of them, which Python reports as a
# "still running" ResourceWarning from Popen.__del__; the cluster fixture collects them
# before it ends, so any such report lands in this module.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Popen.__del__:pytest.PytestUnraisableExceptionWarning",
    "ignore:subprocess .* is still running:ResourceWarning",
)

GIB = 1024**3


@dataclass
class RayCluster:
    cluster: Any
    cpu_nodes: list[Any]  # head first
    gpu_node: Any
    raylets: dict[int, Any]  # each node's raylet pid, read while it runs

    def placements(self) -> dict[int, Any]:
        """Each running model server's pid -> the node whose raylet is its ancestor."""
        raylets = self.raylets
        found = {}
        for process in psutil.process_iter(["cmdline"]):
            if "modelhost.modelserver" not in " ".join(process.info["cmdline"] or []):
                continue
            try:
                for parent in process.parents():
                    if parent.pid in raylets:
                        found[process.pid] = raylets[parent.pid]
                        break
            except psutil.Error:
                continue
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    node = {"num_cpus": 2, "memory": 64 * GIB, "object_store_memory": 80 * 1024**2}
    made = cluster_utils.Cluster(initialize_head=True, head_node_args=node)
    try:
        worker = made.add_node(**node)
        gpu = made.add_node(**node, num_gpus=1, resources={"ml.g5": 1})
        made.wait_for_nodes()
        nodes = [made.head_node, worker, gpu]
        raylets = {node.all_processes["raylet"][0].process.pid: node for node in nodes}
        yield RayCluster(made, [made.head_node, worker], gpu, raylets)
    finally:
        made.shutdown()
        gc.collect()


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def model_url(s3: MotoServer) -> str:
    bucket = s3.create_bucket("ray")
    s3.s3_client().put_object(
        Bucket=bucket,
        Key="iris/model.tar.gz",
        Body=model_tarball({"model.joblib": iris_model_bytes()}),
    )
    return f"s3://{bucket}/iris/model.tar.gz"


@pytest.fixture(scope="module")
def server(cluster: RayCluster, s3: MotoServer, tmp_path_factory) -> Iterator[ServerProcess]:
    class RayServer(ServerProcess):
        def command(self) -> list[str]:
            return [
                *super().command(),
                "--instance-backend",
                "ray",
                "--ray-address",
                cluster.cluster.address,
            ]

    started = RayServer(
        tmp_path_factory.mktemp("ray") / "data",
        env={
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            # ml.m5.large (2 vCPUs) asks Ray for 0.5 CPU, ml.g5.xlarge (4) for 1.
            "MODELHOST_CPU_SCALE": "0.25",
            "MODELHOST_STARTUP_TIMEOUT": "60",
            **FAST_AUTOSCALING,
        },
    ).start(timeout_s=120)
    yield started
    started.stop()


def _predict(server: ServerProcess, name: str) -> list[int]:
    body = "\n".join(",".join(map(str, row)) for row in iris_rows(3))
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="text/csv", Body=body
    )
    return [int(float(x)) for x in answer["Body"].read().decode().split()]


def _wait_for_placements(cluster: RayCluster, count: int, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        placed = cluster.placements()
        if len(placed) >= count or time.monotonic() > deadline:
            return placed
        time.sleep(0.2)


def test_endpoint_spreads_over_nodes_and_survives_node_loss(
    cluster: RayCluster, server: ServerProcess, model_url: str
) -> None:
    sagemaker = server.client("sagemaker")
    name = deploy(sagemaker, model_url, variants=[("AllTraffic", 3, 1.0)], timeout_s=180)
    expected = iris_classifier().predict(iris_rows(3)).tolist()
    assert _predict(server, name) == expected
    placed = _wait_for_placements(cluster, 3)
    assert len(placed) == 3, placed
    # SPREAD: three instances on three nodes.
    assert len({id(node) for node in placed.values()}) == 3

    victim = cluster.cpu_nodes[1]
    runtime = server.client("sagemaker-runtime", retries=0)
    with Traffic(runtime, name, threads=2) as traffic:
        traffic.wait_for_answers(20)
        cluster.cluster.remove_node(victim, allow_graceful=False)
        # The survivors keep answering while the lost instance is replaced.
        traffic.wait_for_answers(50, timeout_s=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            placed = cluster.placements()
            if len(placed) == 3 and victim not in placed.values():
                break
            time.sleep(0.5)
        traffic.wait_for_answers(20)
    assert len(placed) == 3, placed
    assert victim not in placed.values()
    # A request in flight on the lost node is retried once on another instance.
    assert traffic.errors == [], error_codes(traffic.errors)
    status = sagemaker.describe_endpoint(EndpointName=name)
    assert status["EndpointStatus"] == "InService"
    assert status["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    assert _predict(server, name) == expected
    # The nodes unpacked the model; the server only checked that it was there.
    models = server.data_dir / "models"
    assert not models.exists() or not any(models.iterdir())
    sagemaker.delete_endpoint(EndpointName=name)


def test_missing_model_data_fails_before_any_node_starts_an_instance(
    server: ServerProcess, model_url: str
) -> None:
    sagemaker = server.client("sagemaker")
    missing = model_url.replace("iris/model.tar.gz", "nothing/model.tar.gz")
    name = deploy(sagemaker, missing, wait=False)
    failed = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=60)
    assert failed["EndpointStatus"] == "Failed"
    assert f"no model data at {missing}" in failed["FailureReason"]
    assert "could not prepare model" in failed["FailureReason"]


def test_gpu_type_lands_on_the_gpu_node_only(
    cluster: RayCluster, server: ServerProcess, model_url: str
) -> None:
    sagemaker = server.client("sagemaker")
    before = set(cluster.placements())
    name = deploy(sagemaker, model_url, instance_type="ml.g5.xlarge", timeout_s=180)
    assert _predict(server, name) == iris_classifier().predict(iris_rows(3)).tolist()
    new = {pid: node for pid, node in _wait_for_placements(cluster, 1).items() if pid not in before}
    assert list(new.values()) == [cluster.gpu_node]
    sagemaker.delete_endpoint(EndpointName=name)


def test_type_no_node_has_stays_pending_then_fails_with_the_reason(
    server: ServerProcess, model_url: str
) -> None:
    sagemaker = server.client("sagemaker")
    # ml.p3.2xlarge: a GPU family no node of the cluster advertises.
    name = deploy(
        sagemaker,
        model_url,
        instance_type="ml.p3.2xlarge",
        variant_fields={"ContainerStartupHealthCheckTimeoutInSeconds": 60},
        wait=False,
    )
    deadline = time.monotonic() + 15
    message = ""
    while time.monotonic() < deadline and not message:
        status = sagemaker.describe_endpoint(EndpointName=name)
        assert status["EndpointStatus"] == "Creating"
        variants = status.get("ProductionVariants", [])
        message = " ".join(
            s.get("StatusMessage", "") for v in variants for s in v.get("VariantStatus", [])
        )
        time.sleep(0.5)
    assert "Waiting for a Ray node" in message and "ml.p3 1" in message, status
    failed = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
    assert failed["EndpointStatus"] == "Failed"
    assert "no Ray node had the resources" in failed["FailureReason"]
    assert "none of the cluster's" in failed["FailureReason"]


def test_scale_out_waiting_for_a_node_shows_in_the_scaling_activity(
    server: ServerProcess, model_url: str
) -> None:
    sagemaker = server.client("sagemaker")
    aas = server.client("application-autoscaling")
    name = deploy(sagemaker, model_url, instance_type="ml.g5.xlarge", timeout_s=180)
    # The one GPU node holds one ml.g5.xlarge: a minimum of 2 scales out to an instance
    # Ray cannot place until a node has room.
    register(aas, name, 2, 2)

    def pending() -> dict[str, Any] | None:
        activities = aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource_id(name)
        )["ScalingActivities"]
        return next(
            (a for a in activities if "Waiting for a Ray node" in a.get("StatusMessage", "")),
            None,
        )

    wait_until(lambda: pending() is not None, 60, "the scale-out's activity to say it waits")
    activity = pending()
    assert activity is not None
    assert activity["StatusCode"] == "InProgress"
    assert activity["Description"] == "Setting desired instance count to 2."
    assert "ml.g5 1" in activity["StatusMessage"]
    assert "the 1 node(s) that have them are busy" in activity["StatusMessage"]
    # The instance already running keeps serving while the other one waits.
    assert _predict(server, name) == iris_classifier().predict(iris_rows(3)).tolist()
    sagemaker.delete_endpoint(EndpointName=name)


def test_transform_job_over_two_nodes(
    cluster: RayCluster, server: ServerProcess, s3: MotoServer, model_url: str
) -> None:
    bucket = model_url.split("/")[2]
    client = s3.s3_client()
    rows = iris_rows(6) * 20
    for part in range(2):
        body = "".join(",".join(map(str, r)) + "\n" for r in rows)
        client.put_object(Bucket=bucket, Key=f"in/part-{part}.csv", Body=body.encode())
    sagemaker = server.client("sagemaker")
    model = unique("iris")
    sagemaker.create_model(
        ModelName=model, PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": model_url}
    )
    job = unique("job")
    sagemaker.create_transform_job(
        TransformJobName=job,
        ModelName=model,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{bucket}/out", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2},
    )
    before = set(cluster.placements())  # earlier endpoints' instances may still be going
    nodes: set[int] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        nodes |= {id(n) for pid, n in cluster.placements().items() if pid not in before}
        described = sagemaker.describe_transform_job(TransformJobName=job)
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(0.2)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert len(nodes) == 2
    expected = [str(v) for v in iris_classifier().predict(rows)]
    for part in range(2):
        output = client.get_object(Bucket=bucket, Key=f"out/part-{part}.csv.out")
        assert output["Body"].read().decode().split() == expected
