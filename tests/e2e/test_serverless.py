"""Serverless endpoints end to end: scale from zero, throttling, scale back to zero, warm
provisioned concurrency, and the fork server under them.

These tests run their own server with a short idle period (MODELHOST_SERVERLESS_IDLE_S),
so scaling to zero takes a second instead of minutes.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import unique, wait_for_status
from tests.support.models import put_gated_model, put_iris_model, put_model
from tests.support.processes import (
    alive,
    instance_pids,
    kill_and_wait,
    parent_pid,
    wait_until,
)
from tests.support.server import ServerProcess, running_server

ROW = "5.1,3.5,1.4,0.2"
IDLE_S = 1.0


@pytest.fixture(scope="module")
def serverless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("serverless") / "data"
    put_iris_model(data)
    with running_server(
        data,
        env={
            "MODELHOST_SERVERLESS_IDLE_S": str(IDLE_S),
            "MODELHOST_HEALTH_INTERVAL": "0.2",
            "MODELHOST_MODEL_TIMEOUT": "20",
        },
    ) as process:
        yield process


@pytest.fixture(scope="module")
def sm(serverless_server: ServerProcess):
    return serverless_server.client("sagemaker")


@pytest.fixture(scope="module")
def rt(serverless_server: ServerProcess):
    # No retries: a request that fails once (a lost cold start, a 503) must fail the test.
    return serverless_server.client("sagemaker-runtime", retries=0)


def _deploy(
    sm,
    model_url: str = "s3://models/iris/model.tar.gz",
    *,
    max_concurrency: int = 4,
    provisioned: int | None = None,
    image: str = "modelhost/sklearn",
    status: str = "InService",
) -> str:
    name = unique("sl")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    config = {"MemorySizeInMB": 2048, "MaxConcurrency": max_concurrency}
    if provisioned is not None:
        config["ProvisionedConcurrency"] = provisioned
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": config}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_for_status(sm, name, {"InService", "Failed"})["EndpointStatus"] == status
    return name


def _metric(server: ServerProcess, name: str, endpoint: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    labels = f'{{endpoint="{re.escape(endpoint)}",variant="AllTraffic"}}'
    pattern = re.compile(rf"^{name}{labels} (\S+)$", re.MULTILINE)
    found = pattern.search(text)
    return float(found.group(1)) if found else 0.0


def _invoke(rt, name: str) -> bytes:
    answer = rt.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=ROW)
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    return answer["Body"].read()


def test_first_request_from_zero_succeeds(serverless_server, sm, rt) -> None:
    name = _deploy(sm)
    try:
        described = sm.describe_endpoint(EndpointName=name)
        variant = described["ProductionVariants"][0]
        assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
        assert variant["DesiredServerlessConfig"] == variant["CurrentServerlessConfig"]
        assert "CurrentInstanceCount" not in variant
        # InService with nothing running: the deployment proved the model loads, then
        # scaled to zero.
        assert instance_pids(serverless_server.process.pid, name) == []

        assert _invoke(rt, name) == b"0\n"
        assert len(instance_pids(serverless_server.process.pid, name)) == 1
        assert _invoke(rt, name) == b"0\n"  # warm now
        assert _metric(serverless_server, "modelhost_serverless_cold_starts_total", name) == 1
        assert _metric(serverless_server, "modelhost_model_setup_time_seconds_count", name) == 1
        assert _metric(serverless_server, "modelhost_serverless_billed_gb_seconds_total", name) > 0
        assert _metric(serverless_server, "modelhost_serverless_cost_usd_total", name) > 0
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_requests_arriving_together_at_zero_all_succeed(serverless_server, sm, rt) -> None:
    name = _deploy(sm, max_concurrency=8)
    try:
        results: list[object] = []

        def call() -> None:
            try:
                results.append(_invoke(rt, name))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [b"0\n"] * 6
        # 6 in flight at 4 per instance: two instances, both cold starts
        assert 1 <= len(instance_pids(serverless_server.process.pid, name)) <= 2
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_past_max_concurrency_is_throttled(serverless_server, sm, rt, tmp_path: Path) -> None:
    """With MaxConcurrency 1, a second request while the first is in flight gets a 429
    ThrottlingException; the first still succeeds."""
    gate = tmp_path / "open"
    url = put_gated_model(serverless_server.data_dir, gate)
    name = _deploy(sm, url, max_concurrency=1, image="modelhost/python")
    try:
        first: list[object] = []
        holder = threading.Thread(target=lambda: first.append(_invoke(rt, name)))
        holder.start()
        wait_until(
            lambda: _metric(serverless_server, "modelhost_serverless_concurrency", name) == 1,
            what="the first request to be in flight",
        )
        with pytest.raises(ClientError) as excinfo:
            _invoke(rt, name)
        error = excinfo.value.response
        assert error["Error"]["Code"] == "ThrottlingException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert "MaxConcurrency" in error["Error"]["Message"]
        gate.touch()
        holder.join(30)
        assert first == [b"done"]
        assert _metric(serverless_server, "modelhost_serverless_throttles_total", name) == 1
        assert _invoke(rt, name) == b"done"  # below the limit again
    finally:
        gate.touch()
        sm.delete_endpoint(EndpointName=name)


def test_scales_back_to_zero_after_idle_and_starts_again(serverless_server, sm, rt) -> None:
    name = _deploy(sm)
    try:
        assert _invoke(rt, name) == b"0\n"
        (pid,) = instance_pids(serverless_server.process.pid, name)
        wait_until(lambda: not alive(pid), what="the idle instance to stop")
        assert instance_pids(serverless_server.process.pid, name) == []
        assert _invoke(rt, name) == b"0\n"
        assert _metric(serverless_server, "modelhost_serverless_cold_starts_total", name) == 2
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_no_request_is_lost_while_instances_come_and_go(serverless_server, sm, rt) -> None:
    """Traffic with pauses around the idle period: requests keep arriving while idle
    instances are being stopped and new ones started; every one is answered."""
    name = _deploy(sm)
    pauses = [0.0, 0.9, 1.1, 1.25, 0.1, 1.3, 1.0, 1.4, 0.05, 1.2]  # IDLE_S is 1 s
    try:
        for pause in pauses:
            assert _invoke(rt, name) == b"0\n"
            time.sleep(pause)
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_provisioned_concurrency_stays_warm(serverless_server, sm, rt) -> None:
    name = _deploy(sm, provisioned=1)
    try:
        (pid,) = instance_pids(serverless_server.process.pid, name)
        assert _invoke(rt, name) == b"0\n"
        time.sleep(IDLE_S * 2.5)  # past the idle period: a plain instance would be gone
        assert instance_pids(serverless_server.process.pid, name) == [pid]
        assert _invoke(rt, name) == b"0\n"
        assert _metric(serverless_server, "modelhost_serverless_cold_starts_total", name) == 0
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_dead_instance_is_started_again_on_demand(serverless_server, sm, rt) -> None:
    name = _deploy(sm, provisioned=1)
    try:
        (pid,) = instance_pids(serverless_server.process.pid, name)
        kill_and_wait(pid)
        wait_until(
            lambda: (
                [p for p in instance_pids(serverless_server.process.pid, name) if p != pid] != []
            ),
            what="provisioned concurrency to be restored",
        )
        assert _invoke(rt, name) == b"0\n"
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_serverless_update_config_changes_max_concurrency(serverless_server, sm, rt) -> None:
    name = _deploy(sm, max_concurrency=2)
    try:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[
                {
                    "VariantName": "AllTraffic",
                    "ServerlessUpdateConfig": {"MaxConcurrency": 5, "ProvisionedConcurrency": 1},
                }
            ],
        )
        variant = wait_for_status(sm, name, {"InService"})["ProductionVariants"][0]
        assert variant["DesiredServerlessConfig"] == {
            "MemorySizeInMB": 2048,
            "MaxConcurrency": 5,
            "ProvisionedConcurrency": 1,
        }
        assert variant["CurrentServerlessConfig"] == variant["DesiredServerlessConfig"]
        wait_until(
            lambda: len(instance_pids(serverless_server.process.pid, name)) == 1,
            what="the provisioned instance",
        )
        assert _invoke(rt, name) == b"0\n"
        with pytest.raises(ClientError) as excinfo:
            sm.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}
                ],
            )
        assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_update_from_serverless_to_instances_and_back(serverless_server, sm, rt) -> None:
    name = _deploy(sm)
    try:
        sm.create_endpoint_config(
            EndpointConfigName=f"{name}-rt",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-rt")
        variant = wait_for_status(sm, name, {"InService"})["ProductionVariants"][0]
        assert variant["CurrentInstanceCount"] == 1
        assert "CurrentServerlessConfig" not in variant
        assert _invoke(rt, name) == b"0\n"
        sm.update_endpoint(EndpointName=name, EndpointConfigName=name)
        variant = wait_for_status(sm, name, {"InService"})["ProductionVariants"][0]
        assert variant["CurrentServerlessConfig"]["MaxConcurrency"] == 4
        wait_until(
            lambda: instance_pids(serverless_server.process.pid, name) == [],
            what="the instance-based deployment to stop",
        )
        assert _invoke(rt, name) == b"0\n"
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_model_that_cannot_load_fails_the_endpoint(serverless_server, sm) -> None:
    code = b"def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    url = put_model(serverless_server.data_dir, "broken", {"code/inference.py": code})
    name = _deploy(sm, url, image="modelhost/python", status="Failed")
    try:
        reason = sm.describe_endpoint(EndpointName=name)["FailureReason"]
        assert "weights are corrupt" in reason
        assert instance_pids(serverless_server.process.pid, name) == []
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_restarted_server_serves_serverless_endpoints_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    put_iris_model(data)
    first = ServerProcess(data).start()
    try:
        name = _deploy(first.client("sagemaker"))
        assert _invoke(first.client("sagemaker-runtime", retries=0), name) == b"0\n"
    finally:
        first.kill()
    second = first.restarted()
    try:
        runtime = second.client("sagemaker-runtime")

        def serves() -> bool:  # as for real-time endpoints: once the controller redeployed
            try:
                return _invoke(runtime, name) == b"0\n"
            except ClientError:
                return False

        wait_until(serves, what="the serverless endpoint to serve after the restart")
        assert instance_pids(second.process.pid, name) != []  # started for that request
    finally:
        second.stop()


def test_a_crashed_fork_server_takes_its_instances_and_they_are_replaced(
    serverless_server, sm, rt
) -> None:
    """The fork server dies: its instances end with it (nothing modelhost starts may
    outlive its parent), a replacement comes from a new fork server, and requests keep
    being answered, both for that endpoint and for one deployed afterwards."""
    name = _deploy(sm, provisioned=1)
    try:
        (instance,) = instance_pids(serverless_server.process.pid, name)
        kill_and_wait(parent_pid(instance))
        wait_until(lambda: not alive(instance), what="the instance to end with its fork server")
        assert _invoke(rt, name) == b"0\n"
        wait_until(
            lambda: len(instance_pids(serverless_server.process.pid, name)) == 1,
            what="the instance to be replaced",
        )
        (replacement,) = instance_pids(serverless_server.process.pid, name)
        assert replacement != instance
        other = _deploy(sm, provisioned=1)
        try:
            assert _invoke(rt, other) == b"0\n"
        finally:
            sm.delete_endpoint(EndpointName=other)
        assert _invoke(rt, name) == b"0\n"
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_request_waiting_for_a_cold_start_survives_an_update(
    serverless_server, sm, rt, tmp_path: Path
) -> None:
    """A request waits for a cold start that takes long (its model_fn blocks) when
    UpdateEndpoint swaps in another config: the new deployment serves it."""
    slow = tmp_path / "slow"
    code = f"""
import os, time
def model_fn(model_dir):
    while os.path.exists({str(slow)!r}):
        time.sleep(0.01)
    return None
def transform_fn(model, body, content_type, accept):
    return "old", "text/plain"
""".encode()
    url = put_model(serverless_server.data_dir, "slowload", {"code/inference.py": code})
    name = _deploy(sm, url, image="modelhost/python")
    new = _deploy(sm)  # an iris model and its config, for the update
    sm.delete_endpoint(EndpointName=new)
    try:
        slow.touch()
        answers: list[object] = []
        waiting = threading.Thread(target=lambda: answers.append(_invoke(rt, name)))
        waiting.start()
        wait_until(
            lambda: _metric(serverless_server, "modelhost_serverless_concurrency", name) == 1,
            what="the request to wait for its cold start",
        )
        sm.update_endpoint(EndpointName=name, EndpointConfigName=new)
        waiting.join(60)
        assert answers == [b"0\n"]
    finally:
        slow.unlink(missing_ok=True)
        sm.delete_endpoint(EndpointName=name)


def test_killed_server_takes_fork_server_and_instances_with_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    put_iris_model(data)
    server = ServerProcess(data).start()
    try:
        name = _deploy(server.client("sagemaker"), provisioned=1)
        (instance,) = instance_pids(server.process.pid, name)
        forkserver = parent_pid(instance)
        assert forkserver != server.process.pid
        assert b"modelhost.instances.forkserver" in Path(f"/proc/{forkserver}/cmdline").read_bytes()
        server.kill()
        wait_until(
            lambda: not alive(instance) and not alive(forkserver),
            timeout_s=15,
            what="the fork server and its instance to exit",
        )
    finally:
        server.kill()


def test_fresh_interpreter_instances_still_work(tmp_path: Path) -> None:
    """MODELHOST_FORK_SERVER=0 starts each instance as `python -m modelhost.modelserver`."""
    data = tmp_path / "data"
    put_iris_model(data)
    server = ServerProcess(data, env={"MODELHOST_FORK_SERVER": "0"}).start()
    try:
        name = _deploy(server.client("sagemaker"))
        assert _invoke(server.client("sagemaker-runtime", retries=0), name) == b"0\n"
        (pid,) = instance_pids(server.process.pid, name)
        assert b"modelhost.modelserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        server.stop()
