"""Instances that die are replaced, and a restarted server brings endpoints back."""

from __future__ import annotations

import threading
import time

from tests.support.endpoints import deploy, wait_for_status
from tests.support.models import put_breakable_model, put_iris_model
from tests.support.processes import alive, instance_pids, kill_and_wait, wait_until
from tests.support.server import ServerProcess
from tests.support.traffic import Traffic, error_codes


def _csv_row() -> str:
    return "5.1,3.5,1.4,0.2"


def test_dead_instance_is_replaced_and_requests_retried(
    server, sagemaker, runtime, iris_model_url: str
) -> None:
    name = deploy(sagemaker, iris_model_url, variants=[("AllTraffic", 2, 1.0)])
    pids = instance_pids(server.process.pid, name)
    assert len(pids) == 2
    failures: list[Exception] = []
    done = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal done
        while not stop.is_set():
            try:
                runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=_csv_row())
                done += 1
            except Exception as exc:
                failures.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        kill_and_wait(pids[0])
        wait_until(
            lambda: (
                len(instance_pids(server.process.pid, name)) == 2
                and pids[0] not in instance_pids(server.process.pid, name)
            ),
            what="a replacement instance",
        )
        described = wait_for_status(sagemaker, name, {"InService"})
        wait_until(
            lambda: (
                sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0][
                    "CurrentInstanceCount"
                ]
                == 2
            ),
            what="CurrentInstanceCount back to 2",
        )
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert done > 50
    assert described["EndpointStatus"] == "InService"


def test_restart_brings_endpoints_back(tmp_path) -> None:
    data = tmp_path / "data"
    put_iris_model(data)
    first = ServerProcess(data).start()
    try:
        sagemaker = first.client("sagemaker")
        name = deploy(sagemaker, "s3://models/iris/model.tar.gz")
        (pid,) = instance_pids(first.process.pid, name)
        # killed while this one is still Creating: the restart must finish the job
        creating = deploy(sagemaker, "s3://models/iris/model.tar.gz", wait=False)
        first.kill()
        # instances never outlive a killed control plane
        wait_until(lambda: not alive(pid), timeout_s=15, what="orphaned instance to exit")
    finally:
        first.kill()

    second = first.restarted()
    try:
        sagemaker = second.client("sagemaker")
        runtime = second.client("sagemaker-runtime")
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"

        def serves() -> bool:
            try:
                runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=_csv_row())
                return True
            except Exception:
                return False

        wait_until(serves, what="the endpoint to serve again after restart")
        assert len(instance_pids(second.process.pid, name)) == 1
        assert (
            wait_for_status(sagemaker, creating, {"InService", "Failed"})["EndpointStatus"]
            == "InService"
        )
    finally:
        second.stop()


def test_restart_under_load_fails_no_call(tmp_path) -> None:
    """The server is SIGKILLed while four clients invoke an InService endpoint and started
    again on the same data directory. Calls made while no server listens cannot connect;
    every call that reaches the new server is answered, none with an error: requests that
    arrive before the endpoint's instances are back (before its controller even ran) wait
    for them instead of getting 400."""
    data = tmp_path / "data"
    put_iris_model(data)
    first = ServerProcess(data).start()
    second = None
    try:
        name = deploy(
            first.client("sagemaker"),
            "s3://models/iris/model.tar.gz",
            variants=[("AllTraffic", 2, 1.0)],
        )
        with Traffic(first.client("sagemaker-runtime"), name) as traffic:
            traffic.wait_for_answers(20)
            first.kill()
            second = first.restarted()
            traffic.wait_for_answers(100)
        assert error_codes(traffic.errors) == []
    finally:
        first.kill()
        if second is not None:
            second.stop()


def test_stopping_the_server_stops_its_instances(tmp_path) -> None:
    data = tmp_path / "data"
    put_iris_model(data)
    server = ServerProcess(data).start()
    try:
        name = deploy(
            server.client("sagemaker"),
            "s3://models/iris/model.tar.gz",
            variants=[("AllTraffic", 2, 1.0)],
        )
        pids = instance_pids(server.process.pid, name)
        assert len(pids) == 2
    finally:
        server.stop()
    # A graceful shutdown stops them before the server exits; the instances' own watch
    # on their parent (1 s polls) would be too slow to pass this.
    wait_until(
        lambda: not any(alive(pid) for pid in pids),
        timeout_s=0.3,
        what="instances to stop with the server",
    )


def test_replacement_that_cannot_start_backs_off_and_recovers(
    server, sagemaker, runtime, tmp_path
) -> None:
    """The model breaks after the endpoint came up (here: a marker file its model_fn
    refuses); the dead instance's replacements fail, are retried with growing delays
    instead of every second, and the endpoint serves again once the model is fixed."""
    marker = tmp_path / "broken"
    url = put_breakable_model(server.data_dir, "flaky", marker)
    name = deploy(sagemaker, url, image="modelhost/python")
    (pid,) = instance_pids(server.process.pid, name)
    marker.write_text("x")
    log_start = len(server.log())
    kill_and_wait(pid)
    wait_until(
        lambda: (
            server.log()[log_start:].count(f"endpoint {name}: replacement instance failed") >= 2
        ),
        timeout_s=30,
        what="two failed replacement attempts",
    )
    attempts = server.log()[log_start:].count(f"endpoint {name}: replacement instance failed")
    time.sleep(3)
    # with backoff (2 s, 4 s, ...) three more seconds add at most one attempt
    assert (
        server.log()[log_start:].count(f"endpoint {name}: replacement instance failed")
        <= attempts + 1
    )
    marker.unlink()

    def serves() -> bool:
        try:
            answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"x")
        except Exception:  # still recovering
            return False
        return answer["Body"].read() == b"ok"

    wait_until(serves, timeout_s=30, what="the endpoint to serve again")
