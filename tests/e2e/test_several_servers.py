"""Two `modelhost server` processes on one PostgreSQL state store and one S3 (moto's
server), each with its own data dir: every endpoint's instances and every transform job
are worked by exactly one of them (the holder of its lease), the other routes to them, and
takes the work over when the owner is SIGKILLed."""

from __future__ import annotations

import json
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import wait_for_status
from tests.support.models import iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.postgres import PostgresServer
from tests.support.processes import instance_processes
from tests.support.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/any"
LEASE_PERIOD_S = 3


@pytest.fixture
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def pair(
    tmp_path: Path, postgres: PostgresServer, s3: MotoServer
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    """Two servers sharing a fresh database and the S3 endpoint; and the database URL."""
    url = postgres.new_database()
    env = {
        "MODELHOST_STATE_URL": url,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
        "MODELHOST_LEASE_PERIOD": str(LEASE_PERIOD_S),
        "MODELHOST_MODEL_TIMEOUT": "5",
        "MODELHOST_TRANSFORM_PART_BYTES": "1",
    }  # every mini-batch is its own part
    with ExitStack() as stack:
        servers = []
        for name in ("one", "two"):
            server = ServerProcess(tmp_path / name, env=env).start()
            stack.callback(server.stop)
            servers.append(server)
        yield servers[0], servers[1], url


def _holder(url: str, name: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT holder FROM leases WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def _server_id(server: ServerProcess) -> str:
    return (server.data_dir / "server-id").read_text().strip()


def _describe_job(server: ServerProcess, name: str) -> dict:
    """DescribeTransformJob as the server answers it, with modelhost's TransformProgress
    (boto3 drops fields SageMaker's model does not have)."""
    request = urllib.request.Request(
        server.url + "/",
        data=json.dumps({"TransformJobName": name}).encode(),
        headers={
            "X-Amz-Target": "SageMaker.DescribeTransformJob",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def _invoke(server: ServerProcess, name: str) -> dict:
    runtime = server.client("sagemaker-runtime")
    try:
        answer = runtime.invoke_endpoint(
            EndpointName=name, Body=json.dumps(iris_rows()), ContentType="application/json"
        )
    except ClientError as error:
        return {
            "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
            "code": error.response["Error"]["Code"],
            "message": error.response["Error"]["Message"],
        }
    return {"status": answer["ResponseMetadata"]["HTTPStatusCode"]}


def test_one_server_runs_an_endpoint_and_the_other_takes_it_over(
    pair: tuple[ServerProcess, ServerProcess, str], s3: MotoServer
) -> None:
    one, two, url = pair
    bucket = s3.create_bucket("models")
    s3.s3_client().put_object(
        Bucket=bucket,
        Key="iris/model.tar.gz",
        Body=model_tarball({"model.joblib": iris_model_bytes()}),
    )
    sagemaker = one.client("sagemaker")
    sagemaker.create_model(
        ModelName="iris",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": f"s3://{bucket}/iris/model.tar.gz",
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="iris",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "iris",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 2,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
    wait_for_status(two.client("sagemaker"), "iris", {"InService"})

    owner_id = _holder(url, "endpoint:iris")
    by_id = {_server_id(one): one, _server_id(two): two}
    assert owner_id in by_id
    owner = by_id.pop(owner_id)
    (other,) = by_id.values()
    # Exactly one server runs the endpoint's instances.
    assert len(instance_processes(owner.pid)) == 2
    assert instance_processes(other.pid) == []
    assert _invoke(owner, "iris") == {"status": 200}
    assert _invoke(other, "iris") == {"status": 200}  # routed to the owner's instances

    owner.kill()
    deadline = time.monotonic() + 90
    while (answer := _invoke(other, "iris")) != {"status": 200}:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    assert _holder(url, "endpoint:iris") == _server_id(other)
    assert len(instance_processes(other.pid)) == 2


# Echoes each record's first column, slowly enough that the job still runs at the kill.
_ECHO = textwrap.dedent("""
    import time

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        time.sleep(0.5)
        return "".join(line.split(",")[0] + "\\n" for line in body.splitlines())
""").encode()
_ROWS = 100_000  # about 2 MB an object: three 1 MB mini-batches each


def test_the_owner_of_a_transform_job_killed_the_other_server_finishes_it(
    pair: tuple[ServerProcess, ServerProcess, str], s3: MotoServer
) -> None:
    one, two, url = pair
    bucket = s3.create_bucket("batch")
    client = s3.s3_client()
    client.put_object(
        Bucket=bucket, Key="models/echo.tar.gz", Body=model_tarball({"code/inference.py": _ECHO})
    )
    inputs = {}
    for part in ("a", "b", "c"):
        inputs[part] = "".join(f"{part}{i},5.1,3.5,1.4,0.2\n" for i in range(_ROWS))
        client.put_object(Bucket=bucket, Key=f"in/{part}.csv", Body=inputs[part].encode())
    sagemaker = two.client("sagemaker")
    sagemaker.create_model(
        ModelName="echo",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "modelhost/python",
            "ModelDataUrl": f"s3://{bucket}/models/echo.tar.gz",
        },
    )
    sagemaker.create_transform_job(
        TransformJobName="taken-over",
        ModelName="echo",
        MaxPayloadInMB=1,
        BatchStrategy="MultiRecord",
        MaxConcurrentTransforms=1,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{bucket}/out/", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    deadline = time.monotonic() + 90
    while True:
        described = _describe_job(two, "taken-over")
        assert described["TransformJobStatus"] == "InProgress", described.get("FailureReason")
        progress = described.get("TransformProgress", {})
        if progress.get("RecordsProcessed", 0) > 0:
            break
        assert time.monotonic() < deadline, (
            f"the job made no progress:\n{one.log_tail()}\n{two.log_tail()}"
        )
        time.sleep(0.1)
    servers = {_server_id(one): one, _server_id(two): two}
    owner = servers.pop(_holder(url, "transform_job:taken-over"))  # type: ignore[arg-type]
    (other,) = servers.values()
    assert instance_processes(other.pid) == []  # the job runs on its owner only
    owner.kill()
    assert progress["ObjectsCompleted"] < 3, "the job finished before the kill"

    other_client = other.client("sagemaker")
    other_client.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName="taken-over", WaiterConfig={"Delay": 1, "MaxAttempts": 180}
    )
    job = _describe_job(other, "taken-over")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    for part, text in inputs.items():
        output = client.get_object(Bucket=bucket, Key=f"out/{part}.csv.out")["Body"].read()
        # complete, in order, every record once
        assert output.decode().splitlines() == [line.split(",")[0] for line in text.splitlines()]
    assert job["TransformProgress"]["RecordsProcessed"] == 3 * _ROWS
    assert _holder(url, "transform_job:taken-over") is None  # released when it ended


def test_racing_creates_and_deletes_across_servers(
    pair: tuple[ServerProcess, ServerProcess, str],
) -> None:
    """10 threads, half on each server, creating and deleting models and endpoint configs
    of the same names in different cases: every answer is a success or a 400, never a
    500, and no name ends up twice."""
    one, two, _ = pair
    names = ["Alpha", "beta", "GAMMA"]
    answers: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        sagemaker = (one if number % 2 else two).client("sagemaker")
        for round_ in range(6):
            for name in names:
                cased = name.upper() if (number + round_) % 2 else name.lower()
                calls = [
                    (
                        "create_model",
                        lambda n=cased: sagemaker.create_model(
                            ModelName=n,
                            ExecutionRoleArn=ROLE,
                            PrimaryContainer={
                                "Image": "modelhost/sklearn",
                                "ModelDataUrl": "s3://models/none/model.tar.gz",
                            },
                        ),
                    ),
                    (
                        "create_config",
                        lambda n=cased: sagemaker.create_endpoint_config(
                            EndpointConfigName=n,
                            ProductionVariants=[
                                {
                                    "VariantName": "v",
                                    "ModelName": n,
                                    "InstanceType": "ml.m5.large",
                                    "InitialInstanceCount": 1,
                                }
                            ],
                        ),
                    ),
                    (
                        "delete_config",
                        lambda n=cased: sagemaker.delete_endpoint_config(EndpointConfigName=n),
                    ),
                    ("delete_model", lambda n=cased: sagemaker.delete_model(ModelName=n)),
                ]
                for what, call in calls[:2] if round_ % 3 == 0 else calls:
                    try:
                        status = call()["ResponseMetadata"]["HTTPStatusCode"]
                    except ClientError as error:
                        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
                    with lock:
                        answers.append((what, status))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers and {status for _, status in answers} <= {200, 400}, sorted(
        {a for a in answers if a[1] not in (200, 400)}
    )
    assert any(status == 200 for what, status in answers if what == "create_model")
    for server in (one, two):
        sagemaker = server.client("sagemaker")
        models = [m["ModelName"].lower() for m in sagemaker.list_models()["Models"]]
        configs = [
            c["EndpointConfigName"].lower()
            for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        ]
        assert len(models) == len(set(models)), models
        assert len(configs) == len(set(configs)), configs
