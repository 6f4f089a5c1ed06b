"""Instances that stop answering are found by their health checks and replaced, and the
requests they held are served by a healthy instance instead of failing."""

from __future__ import annotations

import os
import signal

from tests.support.endpoints import deploy
from tests.support.models import put_model
from tests.support.processes import alive, instance_pids, wait_until
from tests.support.traffic import Traffic, error_codes


def test_stopped_instance_is_replaced_without_failing_requests(
    server, sagemaker, runtime, iris_model_url: str
) -> None:
    """SIGSTOP: the process keeps its socket, so connections open and requests go in, but
    nothing answers. Its missed pings take it out of rotation and replace it; the requests
    it held are retried on the other instance."""
    name = deploy(sagemaker, iris_model_url, variants=[("AllTraffic", 2, 1.0)])
    pids = instance_pids(server.process.pid, name)
    assert len(pids) == 2
    with Traffic(runtime, name) as traffic:
        traffic.wait_for_answers(20)
        os.kill(pids[0], signal.SIGSTOP)
        try:
            wait_until(
                lambda: not alive(pids[0]), timeout_s=30, what="the stopped instance to be killed"
            )
            wait_until(
                lambda: len(instance_pids(server.process.pid, name)) == 2,
                timeout_s=30,
                what="a replacement instance",
            )
        finally:
            if alive(pids[0]):
                os.kill(pids[0], signal.SIGCONT)
        traffic.wait_for_answers(50)
    assert error_codes(traffic.errors) == []
    assert pids[1] in instance_pids(server.process.pid, name)


def test_instance_whose_model_hangs_is_replaced(server, sagemaker, runtime, tmp_path) -> None:
    """A model that deadlocks on one instance: that instance still answers /ping (model
    code runs off its event loop), but its requests time out while its peer answers. After
    a few such timeouts it is replaced; the timed-out requests are the model's ModelError
    (the session server's model timeout is 5 s), and once it is gone nothing fails."""
    marker = tmp_path / "hang-pid"
    code = f"""
import os, threading
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    try:
        hang = open({str(marker)!r}).read() == str(os.getpid())
    except OSError:
        hang = False
    if hang:
        threading.Event().wait()
    return "ok", "text/plain"
""".encode()
    url = put_model(server.data_dir, "hangs-on-one", {"code/inference.py": code})
    name = deploy(sagemaker, url, image="modelhost/python", variants=[("AllTraffic", 2, 1.0)])
    pids = instance_pids(server.process.pid, name)
    assert len(pids) == 2
    with Traffic(runtime, name, body=b"x", content_type="text/plain") as traffic:
        traffic.wait_for_answers(20)
        marker.write_text(str(pids[0]))
        wait_until(
            lambda: not alive(pids[0]), timeout_s=90, what="the hung instance to be replaced"
        )
        wait_until(
            lambda: len(instance_pids(server.process.pid, name)) == 2,
            what="the replacement instance",
        )
        failed_before = len(traffic.errors)
        traffic.wait_for_answers(50)
    assert failed_before > 0
    assert all(code.startswith("424 ModelError") for code in error_codes(traffic.errors))
    assert len(traffic.errors) == failed_before
