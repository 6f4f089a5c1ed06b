"""Two `modelhost server` processes on one PostgreSQL state store and one S3 (moto's
server), each with its own data dir, and (for asynchronous inference) one redis-server:
the topology docker/compose.yaml describes, as plain processes. Every endpoint's instances,
its autoscaling, its async requests and every transform job are worked by exactly one of
them (the holder of its lease), the other routes to the endpoint's instances, and takes
the work over when the owner is SIGKILLed."""

from __future__ import annotations

import hashlib
import json
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError

from tests.support.async_inference import DIGEST_CODE
from tests.support.autoscaling import FAST_AUTOSCALING, counts, register, resource_id
from tests.support.endpoints import wait_for_status
from tests.support.models import iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.postgres import PostgresServer
from tests.support.processes import instance_processes
from tests.support.redis import redis_server
from tests.support.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/any"
LEASE_PERIOD_S = 3


@pytest.fixture
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@contextmanager
def two_servers(
    tmp_path: Path, url: str, s3: MotoServer, extra: dict[str, str] | None = None
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    """Two servers sharing the database `url` and the S3 endpoint; and the URL."""
    env = {
        "MODELHOST_STATE_URL": url,
        "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
        "MODELHOST_LEASE_PERIOD": str(LEASE_PERIOD_S),
        "MODELHOST_MODEL_TIMEOUT": "5",
        "MODELHOST_TRANSFORM_PART_BYTES": "1",  # every mini-batch is its own part
        **(extra or {}),
    }
    with ExitStack() as stack:
        servers = []
        for name in ("one", "two"):
            server = ServerProcess(tmp_path / name, env=env).start()
            stack.callback(server.stop)
            servers.append(server)
        yield servers[0], servers[1], url


@pytest.fixture
def pair(
    tmp_path: Path, postgres: PostgresServer, s3: MotoServer
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    with two_servers(tmp_path, postgres.new_database(), s3) as servers:
        yield servers


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


def _split(
    one: ServerProcess, two: ServerProcess, url: str, lease: str
) -> tuple[ServerProcess, ServerProcess]:
    """(the server holding `lease`, the other one)."""
    by_id = {_server_id(one): one, _server_id(two): two}
    owner = by_id.pop(_holder(url, lease))  # type: ignore[arg-type]
    (other,) = by_id.values()
    return owner, other


def _until(check, what: str, timeout_s: float = 90, *servers: ServerProcess):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns something true; that value."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what}; last: {value!r}\n" + "\n".join(
            s.log_tail() for s in servers
        )
        time.sleep(0.2)
    return value


def _create_endpoint(
    server: ServerProcess, name: str, model_url: str, image: str, count: int, **config: object
) -> None:
    sagemaker = server.client("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_url},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
        **config,
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


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
    # The other server may answer from the killed one's instances for the moment they
    # outlive it; the takeover is its lease and its own instances answering.
    deadline = time.monotonic() + 90
    while (
        _holder(url, "endpoint:iris") != _server_id(other)
        or len(instance_processes(other.pid)) != 2
        or _invoke(other, "iris") != {"status": 200}
    ):
        assert time.monotonic() < deadline, "no takeover by the other server"
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
    """20 threads, half on each server, creating and deleting models and endpoint configs
    of the same names in different cases: every answer is a success or a 400, never a
    500, no name ends up twice, and nothing is left stuck (each name can be deleted and
    created again afterwards, seen the same from both servers)."""
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

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
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
    first, second = one.client("sagemaker"), two.client("sagemaker")
    for config in first.list_endpoint_configs()["EndpointConfigs"]:
        first.delete_endpoint_config(EndpointConfigName=config["EndpointConfigName"])
    for model in second.list_models()["Models"]:
        second.delete_model(ModelName=model["ModelName"])
    for name in names:
        first.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "modelhost/sklearn",
                "ModelDataUrl": "s3://models/none/model.tar.gz",
            },
        )
        assert second.describe_model(ModelName=name)["ModelName"] == name


def test_the_owner_of_an_autoscaled_endpoint_killed_the_other_keeps_scaling(
    tmp_path: Path, postgres: PostgresServer, s3: MotoServer
) -> None:
    """The endpoint's server scales it (a minimum capacity above its count); killed, the
    other server runs the endpoint at the count autoscaling set and goes on scaling it."""
    with two_servers(tmp_path, postgres.new_database(), s3, FAST_AUTOSCALING) as (one, two, url):
        bucket = s3.create_bucket("models")
        s3.s3_client().put_object(
            Bucket=bucket,
            Key="iris/model.tar.gz",
            Body=model_tarball({"model.joblib": iris_model_bytes()}),
        )
        _create_endpoint(one, "scaled", f"s3://{bucket}/iris/model.tar.gz", "modelhost/sklearn", 1)
        wait_for_status(two.client("sagemaker"), "scaled", {"InService"})
        owner, other = _split(one, two, url, "endpoint:scaled")
        register(owner.client("application-autoscaling"), "scaled", 2, 4)
        _until(
            lambda: counts(other.client("sagemaker"), "scaled") == ("InService", 2, 2),
            "the owner did not scale to its minimum",
        )
        assert len(instance_processes(owner.pid)) == 2
        assert instance_processes(other.pid) == []

        owner.kill()
        # An answer may still come from the killed server's instances for a moment: the
        # takeover is the lease, then an answer.
        _until(
            lambda: (
                _holder(url, "endpoint:scaled") == _server_id(other)
                and _invoke(other, "scaled") == {"status": 200}
            ),
            "no takeover",
            90,
            other,
        )
        _until(lambda: len(instance_processes(other.pid)) == 2, "not at the scaled count")

        aas = other.client("application-autoscaling")
        register(aas, "scaled", 3, 4)
        _until(
            lambda: counts(other.client("sagemaker"), "scaled") == ("InService", 3, 3),
            "the survivor did not scale",
            90,
            other,
        )
        assert len(instance_processes(other.pid)) == 3

        def activities() -> list[str]:
            found = aas.describe_scaling_activities(
                ServiceNamespace="sagemaker", ResourceId=resource_id("scaled")
            )["ScalingActivities"]
            return [a["Description"] for a in found if a["StatusCode"] == "Successful"]

        done = _until(
            lambda: (a := activities()) and "Setting desired instance count to 3." in a and a,
            "no successful scaling activity",
        )
        assert "Setting desired instance count to 2." in done


def test_async_requests_to_both_servers_under_a_kill_have_one_outcome_each(
    tmp_path: Path, postgres: PostgresServer, s3: MotoServer
) -> None:
    """Requests accepted by either server go to one Redis queue; the endpoint's server runs
    them. Killed mid-work, the other server takes the endpoint, and the requests the dead
    one held come back to the queue when their lease runs out: every request ends with
    exactly one outcome, its own answer."""
    with (
        redis_server(tmp_path) as queue,
        two_servers(
            tmp_path,
            postgres.new_database(),
            s3,
            {
                "MODELHOST_ASYNC_QUEUE": queue,
                "MODELHOST_ASYNC_LEASE": "3",
                "MODELHOST_ASYNC_POLL_INTERVAL": "0.2",
                "MODELHOST_ASYNC_RETRY_BASE": "0.2",
                "MODELHOST_ASYNC_RETRY_MAX": "1",
            },
        ) as (one, two, url),
    ):
        bucket = s3.create_bucket("async")
        client = s3.s3_client()
        client.put_object(
            Bucket=bucket,
            Key="models/digest.tar.gz",
            Body=model_tarball({"code/inference.py": DIGEST_CODE}),
        )
        _create_endpoint(
            one,
            "queued",
            f"s3://{bucket}/models/digest.tar.gz",
            "modelhost/python",
            1,
            AsyncInferenceConfig={
                "OutputConfig": {
                    "S3OutputPath": f"s3://{bucket}/out",
                    "S3FailurePath": f"s3://{bucket}/failed",
                },
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
            },
        )
        wait_for_status(two.client("sagemaker"), "queued", {"InService"})
        owner, other = _split(one, two, url, "endpoint:queued")

        bodies: dict[str, bytes] = {}  # output location -> the request body
        failures: dict[str, str] = {}  # output location -> failure location

        def submit(server: ServerProcess, number: int) -> None:
            body = json.dumps({"sleep": 0.3, "n": number}).encode()
            client.put_object(Bucket=bucket, Key=f"in/{number}.json", Body=body)
            answer = server.client("sagemaker-runtime").invoke_endpoint_async(
                EndpointName="queued",
                InputLocation=f"s3://{bucket}/in/{number}.json",
                ContentType="application/json",
            )
            bodies[answer["OutputLocation"]] = body
            failures[answer["OutputLocation"]] = answer["FailureLocation"]

        for number in range(24):
            submit(one if number % 2 else two, number)

        def keys(prefix: str) -> set[str]:
            listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
            return {f"s3://{bucket}/{o['Key']}" for o in listed.get("Contents", [])}

        _until(lambda: len(keys("out/")) >= 2, "no request finished", 90, owner)
        assert len(keys("out/")) < len(bodies), "every request finished before the kill"
        owner.kill()
        for number in range(24, 30):
            submit(other, number)

        _until(
            lambda: len(keys("out/") | keys("failed/")) >= len(bodies),
            "not every request ended",
            180,
            other,
        )
        outputs, failed = keys("out/"), keys("failed/")
        assert failed == set(), [
            client.get_object(Bucket=bucket, Key=f.split("/", 3)[3])["Body"].read() for f in failed
        ]
        assert outputs == set(bodies)
        for location, body in bodies.items():
            assert failures[location] not in failed
            answer = json.loads(
                client.get_object(Bucket=bucket, Key=location.split("/", 3)[3])["Body"].read()
            )
            assert answer["bytes"] == len(body)
            assert answer["sha256"] == hashlib.sha256(body).hexdigest()


def test_the_owner_of_a_recommendation_job_killed_the_other_finishes_it(
    pair: tuple[ServerProcess, ServerProcess, str], s3: MotoServer
) -> None:
    """A recommendation job and the temporary endpoint it measures run on one server (the
    job's lease holder); killed mid-job, the other server deletes what it left and runs
    the job to the end."""
    one, two, url = pair
    bucket = s3.create_bucket("rec")
    client = s3.s3_client()
    client.put_object(
        Bucket=bucket,
        Key="iris/model.tar.gz",
        Body=model_tarball({"model.joblib": iris_model_bytes()}),
    )
    client.put_object(
        Bucket=bucket,
        Key="payloads.tar.gz",
        Body=model_tarball({"a.csv": b"5.1,3.5,1.4,0.2\n", "b.csv": b"6.2,2.9,4.3,1.3\n"}),
    )
    sagemaker = one.client("sagemaker")
    sagemaker.create_model(
        ModelName="rec-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": f"s3://{bucket}/iris/model.tar.gz",
        },
    )
    sagemaker.create_inference_recommendations_job(
        JobName="moved",
        JobType="Advanced",
        RoleArn=ROLE,
        InputConfig={
            "ModelName": "rec-model",
            "ContainerConfig": {
                "Domain": "MACHINE_LEARNING",
                "Framework": "SAGEMAKER-SCIKIT-LEARN",
                "PayloadConfig": {
                    "SamplePayloadUrl": f"s3://{bucket}/payloads.tar.gz",
                    "SupportedContentTypes": ["text/csv"],
                },
            },
            "TrafficPattern": {
                "TrafficType": "PHASES",
                "Phases": [{"InitialNumberOfUsers": 1, "SpawnRate": 0, "DurationInSeconds": 3}],
            },
            "EndpointConfigurations": [
                {"InstanceType": "ml.m5.large"},
                {"InstanceType": "ml.c5.large"},
                {"InstanceType": "ml.m5.xlarge"},
            ],
        },
        StoppingConditions={
            "ModelLatencyThresholds": [{"Percentile": "P95", "ValueInMilliseconds": 5000}]
        },
    )

    def measuring() -> str | None:
        """The temporary endpoint being measured once its instance runs, if any."""
        endpoints = two.client("sagemaker").list_endpoints(NameContains="recommender-")
        for endpoint in endpoints["Endpoints"]:
            if endpoint["EndpointStatus"] == "InService":
                return str(endpoint["EndpointName"])
        return None

    endpoint = _until(measuring, "no temporary endpoint came up", 120, one, two)
    owner, other = _split(one, two, url, "recommendation_job:moved")
    # the endpoint measured runs where the job does
    assert _holder(url, f"endpoint:{endpoint}") == _server_id(owner)
    assert instance_processes(other.pid) == []
    owner.kill()

    survivor = other.client("sagemaker")
    job = _until(
        lambda: (
            (d := survivor.describe_inference_recommendations_job(JobName="moved"))["Status"]
            in ("COMPLETED", "FAILED")
            and d
        ),
        "the job did not end",
        300,
        other,
    )
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    steps = survivor.list_inference_recommendations_job_steps(JobName="moved")["Steps"]
    assert [s["Status"] for s in steps] == ["COMPLETED"] * 3
    assert _holder(url, "recommendation_job:moved") is None  # released when it ended
    _until(
        lambda: survivor.list_endpoints(NameContains="recommender-")["Endpoints"] == [],
        "temporary endpoints were left",
    )
