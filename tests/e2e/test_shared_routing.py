"""Any server routes any endpoint: two `modelhost server` processes on one PostgreSQL state
store and one S3 (moto's server); the endpoint's instances run on the server holding its
lease, and the other routes invocations to them from the instance registry, follows them as
they come and go, and takes the endpoint over when its owner is SIGKILLed. Inference
components are routed the same way, from the copies their endpoint's owner runs."""

from __future__ import annotations

import contextlib
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import wait_for, wait_for_status
from tests.support.models import model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.network import primary_address, refused
from tests.support.postgres import PostgresServer
from tests.support.processes import instance_pids, instance_processes
from tests.support.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/any"
ENDPOINT = "shared"

# Answers with the process id of the instance that ran it.
_WHO = textwrap.dedent("""
    import os

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return str(os.getpid()), "text/plain"
""").encode()


@pytest.fixture
def owner_and_other(
    tmp_path: Path, postgres: PostgresServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Server A with endpoint ENDPOINT (one instance) InService, then server B started on
    the same database and S3: A holds the endpoint's lease, B runs nothing of it."""
    with _owner_and_other(tmp_path, postgres, {}) as servers:
        yield servers


@contextmanager
def _owner_and_other(
    tmp_path: Path, postgres: PostgresServer, owner_env: dict[str, str]
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """`owner_and_other`, with `owner_env` added to the owner's environment."""
    with ExitStack() as stack:
        s3: MotoServer = stack.enter_context(moto_server())
        bucket = s3.create_bucket("models")
        s3.s3_client().put_object(
            Bucket=bucket, Key="who.tar.gz", Body=model_tarball({"code/inference.py": _WHO})
        )
        env = {
            "MODELHOST_STATE_URL": postgres.new_database(),
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "MODELHOST_LEASE_PERIOD": "3",
            # Long enough for a request that waits through a takeover.
            "MODELHOST_MODEL_TIMEOUT": "60",
        }
        owner = ServerProcess(tmp_path / "a", env={**env, **owner_env}).start()
        stack.callback(owner.stop)
        sagemaker = owner.client("sagemaker")
        sagemaker.create_model(
            ModelName="who",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "modelhost/python",
                "ModelDataUrl": f"s3://{bucket}/who.tar.gz",
            },
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName="who",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "who",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="who")
        wait_for_status(sagemaker, ENDPOINT, {"InService"})
        other = ServerProcess(tmp_path / "b", env=env).start()
        stack.callback(other.stop)
        yield owner, other


def _who(server: ServerProcess) -> int:
    """The pid of the instance that answered an invocation sent to `server`."""
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=ENDPOINT, Body=b"{}", ContentType="application/json"
    )
    return int(answer["Body"].read())


def _until(what: str, check, timeout_s: float = 90.0, log: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}\n{log}"
        time.sleep(0.2)


def test_a_server_routes_to_the_instances_another_server_runs(
    owner_and_other: tuple[ServerProcess, ServerProcess], postgres: PostgresServer
) -> None:
    owner, other = owner_and_other
    assert instance_pids(other.pid, ENDPOINT) == []
    first = instance_pids(owner.pid, ENDPOINT)
    assert len(first) == 1
    # Invoked on the other server, answered by the owner's instance.
    assert {_who(other) for _ in range(5)} == set(first)

    # A second instance started by the owner: the other server learns of it and routes
    # to both.
    owner.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
    )
    _until(
        "the owner never ran a second instance",
        lambda: len(instance_pids(owner.pid, ENDPOINT)) == 2,
    )
    both = set(instance_pids(owner.pid, ENDPOINT))
    seen: set[int] = set()
    _until(
        f"the other server never routed to both of {both}: saw {seen}",
        lambda: (seen.add(_who(other)), seen == both)[1],
        log=other.log_tail(),
    )
    assert instance_pids(other.pid, ENDPOINT) == []

    # The database lost: the other server routes on to the instances it knows, and its
    # control plane answers a retriable 503 in SageMaker's format until the database is back.
    # (Invocations first: instances replaced on the owner while the database is away stay
    # unknown to the other server until it is back.)
    postgres.stop()
    try:
        assert {_who(other) for _ in range(5)} <= both
        with pytest.raises(ClientError) as lost:
            other.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
        assert lost.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert lost.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        postgres.start()

    def recovered() -> bool:  # a 503 while the pool reconnects is the retriable kind
        try:
            described = other.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ServiceUnavailable", error
            return False
        return bool(described["EndpointStatus"] == "InService")

    _until("the control plane did not recover", recovered, log=other.log_tail())
    _who(other)  # served (by whichever server holds the endpoint after the outage)

    # Deleted on the owner: the other server stops routing with a clear error, at once.
    owner.client("sagemaker").delete_endpoint(EndpointName=ENDPOINT)
    runtime = other.client("sagemaker-runtime")
    errors: list[dict] = []

    def refused() -> bool:
        try:
            runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}")
        except ClientError as error:
            errors.append(error.response)
            return "not found" in error.response["Error"]["Message"]
        return False

    _until("the other server kept routing to a deleted endpoint", refused, log=other.log_tail())
    assert errors[-1]["Error"]["Code"] == "ValidationError"
    assert errors[-1]["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Meanwhile (deleting): a 400 naming the status, or a retriable 503; never a 500.
    assert {e["ResponseMetadata"]["HTTPStatusCode"] for e in errors} <= {400, 503}, errors


def test_a_server_routes_to_instances_on_the_address_their_server_advertises(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """The owner's instances listen on the machine's own address only (as on another
    host): the other server reaches them there, from the address the registry published."""
    address = primary_address()
    env = {"MODELHOST_INSTANCE_ADVERTISE_HOST": address}
    with _owner_and_other(tmp_path, postgres, env) as (owner, other):
        [instance] = instance_processes(owner.pid)
        assert refused("127.0.0.1", instance.port)
        assert {_who(other) for _ in range(5)} == {instance.pid}


def test_when_the_owner_is_killed_the_other_takes_over_without_failing_requests(
    owner_and_other: tuple[ServerProcess, ServerProcess],
) -> None:
    owner, other = owner_and_other
    first = set(instance_pids(owner.pid, ENDPOINT))
    assert _who(other) in first

    answers: list[int | str] = []
    stop = threading.Event()

    def traffic() -> None:  # one request at a time: at most one in flight at the kill
        runtime = other.client("sagemaker-runtime")
        while not stop.is_set():
            try:
                answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}")
                answers.append(int(answer["Body"].read()))
            except ClientError as error:
                answers.append(f"{error.response['Error']['Code']}: {error}")

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        _until("no answer before the kill", lambda: len(answers) >= 3)
        owner.kill()
        _until(
            "the other server never served from its own instance",
            lambda: bool(set(instance_pids(other.pid, ENDPOINT)) & set(answers[-3:])),  # type: ignore[arg-type]
            log=other.log_tail(),
        )
        count = len(answers)
        _until("traffic stopped after the takeover", lambda: len(answers) >= count + 5)
    finally:
        stop.set()
        sender.join(120)
    failed = [a for a in answers if isinstance(a, str)]
    # The allowance: a dying server costs at most the requests in flight to it.
    assert len(failed) <= 1, failed
    served_by = {a for a in answers if isinstance(a, int)}
    own = set(instance_pids(other.pid, ENDPOINT))
    assert served_by <= first | own, (served_by, first, own)
    assert served_by & first and served_by & own


def test_a_serverless_endpoint_is_served_by_its_owner_only(
    owner_and_other: tuple[ServerProcess, ServerProcess],
) -> None:
    """Its instances start on demand where it runs: the other server names that one."""
    servers = owner_and_other
    sagemaker = servers[0].client("sagemaker")
    sagemaker.create_endpoint_config(
        EndpointConfigName="who-serverless",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "who",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="serverless", EndpointConfigName="who-serverless")
    wait_for_status(sagemaker, "serverless", {"InService"})
    answers = {}
    for server in servers:
        try:
            server.client("sagemaker-runtime").invoke_endpoint(
                EndpointName="serverless", Body=b"{}"
            )
            answers[server.pid] = "ok"
        except ClientError as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503, error
            answers[server.pid] = error.response["Error"]["Message"]
    assert sorted(answers.values()).count("ok") == 1, answers
    (refusal,) = [a for a in answers.values() if a != "ok"]
    (owner,) = [s for s in servers if answers[s.pid] == "ok"]
    assert "serverless" in refusal
    assert (owner.data_dir / "server-id").read_text().strip() in refusal


COMPONENTS = "hosting"


def _component_on_owner(owner: ServerProcess, name: str, copies: int) -> None:
    """On the owner: endpoint COMPONENTS (one model-less instance) and inference component
    `name` of model "who" with `copies` copies, InService."""
    sagemaker = owner.client("sagemaker")
    with contextlib.suppress(ClientError):  # the second component's call: it exists
        sagemaker.create_endpoint_config(
            EndpointConfigName=COMPONENTS,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName=COMPONENTS, EndpointConfigName=COMPONENTS)
    wait_for_status(sagemaker, COMPONENTS, {"InService"})
    sagemaker.create_inference_component(
        InferenceComponentName=name,
        EndpointName=COMPONENTS,
        VariantName="AllTraffic",
        Specification={
            "ModelName": "who",
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.5,
                "MinMemoryRequiredInMb": 256,
            },
        },
        RuntimeConfig={"CopyCount": copies},
    )
    wait_for(
        lambda: sagemaker.describe_inference_component(InferenceComponentName=name),
        "InferenceComponentStatus",
        {"InService"},
        f"inference component {name}",
    )


def _who_copy(server: ServerProcess, component: str) -> int:
    """The pid of the copy of `component` that answered an invocation sent to `server`."""
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=COMPONENTS, InferenceComponentName=component, Body=b"{}"
    )
    return int(answer["Body"].read())


def _refusal(server: ServerProcess, component: str) -> dict | None:
    """The error an invocation of `component` sent to `server` gets; None if answered."""
    try:
        _who_copy(server, component)
    except ClientError as error:
        return error.response
    return None


def test_a_server_routes_inference_components_to_the_copies_another_server_runs(
    owner_and_other: tuple[ServerProcess, ServerProcess],
) -> None:
    owner, other = owner_and_other
    _component_on_owner(owner, "whoc", 1)
    first = instance_pids(owner.pid, COMPONENTS)
    assert len(first) == 1
    # Invoked on the other server, answered by the owner's copy; the other runs none.
    _until(
        "the other server never routed to the owner's copy",
        lambda: _refusal(other, "whoc") is None,
        log=other.log_tail(),
    )
    assert {_who_copy(other, "whoc") for _ in range(5)} == set(first)
    assert instance_pids(other.pid, COMPONENTS) == []

    # A second copy on the owner: the other server learns of it and routes to both.
    sagemaker = owner.client("sagemaker")
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="whoc", DesiredRuntimeConfig={"CopyCount": 2}
    )
    _until(
        "the owner never ran a second copy",
        lambda: len(instance_pids(owner.pid, COMPONENTS)) == 2,
    )
    both = set(instance_pids(owner.pid, COMPONENTS))
    seen: set[int] = set()
    _until(
        f"the other server never routed to both copies {both}: saw {seen}",
        lambda: (seen.add(_who_copy(other, "whoc")), seen == both)[1],
        log=other.log_tail(),
    )
    # Back to one: the other server routes only to the copy left.
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="whoc", DesiredRuntimeConfig={"CopyCount": 1}
    )
    _until(
        "the owner never stopped a copy",
        lambda: len(instance_pids(owner.pid, COMPONENTS)) == 1,
    )
    left = set(instance_pids(owner.pid, COMPONENTS))
    assert {_who_copy(other, "whoc") for _ in range(5)} == left
    assert instance_pids(other.pid, COMPONENTS) == []

    # At zero copies with a scalable target, scaling out is the owner's: the other server
    # answers a retriable 503 naming it.
    owner.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="inference-component/whoc",
        ScalableDimension="sagemaker:inference-component:DesiredCopyCount",
        MinCapacity=0,
        MaxCapacity=1,
    )
    sagemaker.update_inference_component_runtime_config(
        InferenceComponentName="whoc", DesiredRuntimeConfig={"CopyCount": 0}
    )
    refusals: list[dict] = []
    _until(
        "the other server never refused the component at zero copies",
        lambda: (refusals.append(_refusal(other, "whoc") or {}), "Error" in refusals[-1])[1],
        log=other.log_tail(),
    )
    refusal = refusals[-1]
    assert refusal["ResponseMetadata"]["HTTPStatusCode"] == 503, refusal
    assert (owner.data_dir / "server-id").read_text().strip() in refusal["Error"]["Message"]


def test_a_component_deleted_on_its_owner_is_not_found_on_another_server(
    owner_and_other: tuple[ServerProcess, ServerProcess],
) -> None:
    owner, other = owner_and_other
    _component_on_owner(owner, "gone", 1)
    _until(
        "the other server never routed to the owner's copy",
        lambda: _refusal(other, "gone") is None,
        log=other.log_tail(),
    )
    assert _who_copy(other, "gone") in instance_pids(owner.pid, COMPONENTS)

    owner.client("sagemaker").delete_inference_component(InferenceComponentName="gone")
    errors: list[dict] = []
    _until(
        "the other server kept routing to a deleted component",
        lambda: (errors.append(_refusal(other, "gone") or {}), "not found" in str(errors[-1]))[1],
        log=other.log_tail(),
    )
    assert errors[-1]["Error"]["Code"] == "ValidationError"
    assert errors[-1]["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Meanwhile: the deleted copy's answer, or a retriable 503; never a 500.
    codes = {e["ResponseMetadata"]["HTTPStatusCode"] for e in errors if e}
    assert codes <= {400, 503}, errors


def test_when_a_components_owner_is_killed_the_other_server_runs_its_copies(
    owner_and_other: tuple[ServerProcess, ServerProcess],
) -> None:
    owner, other = owner_and_other
    _component_on_owner(owner, "moved", 1)
    first = set(instance_pids(owner.pid, COMPONENTS))
    _until(
        "the other server never routed to the owner's copy",
        lambda: _refusal(other, "moved") is None,
        log=other.log_tail(),
    )
    assert _who_copy(other, "moved") in first
    owner.kill()
    # The lease moves: the other server places a copy of its own and answers from it.
    answers: list[int | dict] = []

    def own_copy() -> bool:
        try:
            answers.append(_who_copy(other, "moved"))
        except ClientError as error:
            answers.append(error.response)
            return False
        return answers[-1] in instance_pids(other.pid, COMPONENTS)

    _until("the other server never served from its own copy", own_copy, log=other.log_tail())
    refusals = [a for a in answers if isinstance(a, dict)]
    assert {r["ResponseMetadata"]["HTTPStatusCode"] for r in refusals} <= {503}, refusals
