"""Asynchronous inference survives crashes: of the server (SIGKILL with hundreds of
requests queued or running) and of an instance in the middle of a request."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.async_inference import (
    deploy_async,
    local_path,
    put_digest_model,
    wait_for_object,
)
from tests.support.processes import instance_pids, kill_and_wait, wait_until
from tests.support.redis import redis_server
from tests.support.server import ServerProcess


def _submit(
    server: ServerProcess,
    runtime,
    endpoint: str,
    bodies: list[bytes],
    content_type: str = "application/json",
) -> list[dict]:
    answers = []
    for index, body in enumerate(bodies):
        path = local_path(server.data_dir, f"s3://inputs/{endpoint}/{index}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        answers.append(
            runtime.invoke_endpoint_async(
                EndpointName=endpoint,
                InputLocation=f"s3://inputs/{endpoint}/{index}.json",
                ContentType=content_type,
            )
        )
    return answers


def _outcomes(server: ServerProcess, answers: list[dict]) -> list[tuple[bool, bool]]:
    return [
        (
            local_path(server.data_dir, a["OutputLocation"]).is_file(),
            local_path(server.data_dir, a["FailureLocation"]).is_file(),
        )
        for a in answers
    ]


@pytest.fixture(params=["sqlite", "redis"])
def queue_env(request, tmp_path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    with redis_server(tmp_path) as url:
        # A dead server's leases are not given back on start with Redis (other servers
        # may hold them): they run out. Short, so the test does not wait long.
        yield {"MODELHOST_ASYNC_QUEUE": url, "MODELHOST_ASYNC_LEASE": "2"}


def test_server_sigkill_loses_no_request_and_runs_none_twice(
    tmp_path, queue_env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    # A short retention: finished requests are pruned while others are redelivered.
    env = {"MODELHOST_ASYNC_POLL_INTERVAL": "0.2", "MODELHOST_ASYNC_RETENTION_S": "1", **queue_env}
    first = ServerProcess(data, env=env).start()
    try:
        model = put_digest_model(data)
        endpoint = deploy_async(first.client("sagemaker"), model, count=2, per_instance=4)
        # The first ones are quick, the rest slow enough (about 6 s of work for the 8
        # slots) that the kill below finds most of them not done, however fast the
        # machine and however slow the test's look at the outcomes.
        bodies = [
            json.dumps({"n": n, "sleep": 0.02 if n < 40 else 0.2}).encode() for n in range(300)
        ]
        answers = _submit(first, first.client("sagemaker-runtime"), endpoint, bodies)
        # Killed with some requests done, some running and most still queued.
        wait_until(
            lambda: sum(out for out, _ in _outcomes(first, answers)) >= 20, 60, "the first results"
        )
        first.kill()
    finally:
        first.stop()
    done_before = sum(out for out, _ in _outcomes(first, answers))
    assert done_before < len(answers)

    second = ServerProcess(data, env=env).start()
    try:
        wait_until(
            lambda: all(out or failed for out, failed in _outcomes(second, answers)),
            180,
            "every request to end",
        )
        outcomes = _outcomes(second, answers)
        assert all(out and not failed for out, failed in outcomes), outcomes
        for body, answer in zip(bodies, answers, strict=True):
            result = json.loads(local_path(second.data_dir, answer["OutputLocation"]).read_bytes())
            assert result["sha256"] == hashlib.sha256(body).hexdigest()
        # nothing half-written is left next to the results
        results = local_path(second.data_dir, answers[0]["OutputLocation"]).parent
        assert sorted(p.name for p in results.iterdir()) == sorted(
            a["OutputLocation"].rsplit("/", 1)[1] for a in answers
        )
        wait_until(lambda: not any(_counts(second, endpoint).values()), 30, "the queue to empty")
    finally:
        second.stop()


def _counts(server: ServerProcess, endpoint: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.url}/endpoints/{endpoint}/async-requests") as answer:
        return json.loads(answer.read())["Counts"]


def test_finished_requests_are_pruned_after_the_retention(
    tmp_path, queue_env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(
        data,
        env={
            "MODELHOST_ASYNC_POLL_INTERVAL": "0.2",
            "MODELHOST_ASYNC_RETENTION_S": "2",
            **queue_env,
        },
    ).start()
    try:
        endpoint = deploy_async(server.client("sagemaker"), put_digest_model(data))
        answers = _submit(
            server,
            server.client("sagemaker-runtime"),
            endpoint,
            [b'{"n": 1}', b'{"fail": "on purpose"}'],
        )
        wait_until(
            lambda: all(out or failed for out, failed in _outcomes(server, answers)),
            60,
            "both requests to end",
        )
        assert _outcomes(server, answers) == [(True, False), (False, True)]
        wait_until(
            lambda: not any(_counts(server, endpoint).values()),
            30,
            "finished requests to be pruned",
        )
        # The queue forgot them; their result and failure objects stay.
        assert _outcomes(server, answers) == [(True, False), (False, True)]
    finally:
        server.stop()


def test_instance_killed_mid_request_is_retried_on_another(server, sagemaker, runtime) -> None:
    endpoint = deploy_async(sagemaker, put_digest_model(server.data_dir), count=2, per_instance=2)
    pids = instance_pids(server.process.pid, endpoint)
    assert len(pids) == 2
    answers = _submit(
        server, runtime, endpoint, [json.dumps({"n": n, "sleep": 1.5}).encode() for n in range(4)]
    )
    time.sleep(0.6)  # all four running: two on each instance
    kill_and_wait(pids[0])
    for answer in answers:
        found = wait_for_object(
            server.data_dir, answer["OutputLocation"], answer["FailureLocation"], timeout_s=90
        )
        assert found == answer["OutputLocation"], local_path(server.data_dir, found).read_text()
        assert json.loads(local_path(server.data_dir, found).read_bytes())["pid"] != pids[0]
    assert "will be retried: instance closed the connection" in server.log()


@pytest.mark.parametrize("per_instance", [1, 3])
def test_concurrency_per_instance_is_limited(server, sagemaker, runtime, per_instance: int) -> None:
    # The instance could run four at once; the endpoint allows `per_instance`.
    endpoint = deploy_async(
        sagemaker,
        put_digest_model(server.data_dir),
        per_instance=per_instance,
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "4"},
    )
    answers = _submit(
        server, runtime, endpoint, [json.dumps({"n": n, "sleep": 0.4}).encode() for n in range(6)]
    )
    seen = []
    for answer in answers:
        found = wait_for_object(
            server.data_dir, answer["OutputLocation"], answer["FailureLocation"]
        )
        seen.append(json.loads(local_path(server.data_dir, found).read_bytes())["overlapping"])
    assert max(seen) <= per_instance
    if per_instance > 1:
        assert max(seen) > 1  # the limit, not the instance, kept the count down
