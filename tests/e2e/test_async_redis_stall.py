"""A Redis queue that stops answering (its server SIGSTOPped) must not stop the rest of
the server: every queue call waits on a network round trip, and none may block the event
loop that also answers /ping and real-time invocations. Requests accepted meanwhile wait
for Redis and are all run once it is back."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.async_inference import deploy_async, local_path, put_digest_model
from tests.support.endpoints import deploy
from tests.support.models import iris_rows, put_iris_model
from tests.support.processes import wait_until
from tests.support.redis import redis_process
from tests.support.server import ServerProcess


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (state T in /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _in_background(calls: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], threading.Event]:
    """Run each call in a thread of its own; the results fill in as they arrive, and the
    event is set once all of them have."""
    results: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def run(name: str, call: Callable[[], Any]) -> None:
        try:
            result: Any = call()
        except Exception as exc:
            result = exc
        with lock:
            results[name] = result
            if len(results) == len(calls):
                done.set()

    for name, call in calls.items():
        threading.Thread(target=run, args=(name, call), daemon=True).start()
    return results, done


def test_a_stopped_redis_does_not_stop_ping_or_realtime_invocations(tmp_path: Path) -> None:
    with redis_process(tmp_path) as redis:
        env = {"MODELHOST_ASYNC_QUEUE": redis.url, "MODELHOST_ASYNC_POLL_INTERVAL": "0.2"}
        server = ServerProcess(tmp_path / "data", env=env).start()
        try:
            sagemaker = server.client("sagemaker")
            realtime = deploy(sagemaker, put_iris_model(server.data_dir))
            asynchronous = deploy_async(sagemaker, put_digest_model(server.data_dir))
            runtime = server.client("sagemaker-runtime")
            inputs = []
            for n in range(6):
                path = local_path(server.data_dir, f"s3://inputs/{n}.json")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"n": n, "sleep": 0.2}))
                inputs.append(f"s3://inputs/{n}.json")

            def submit(location: str) -> dict[str, Any]:
                return runtime.invoke_endpoint_async(
                    EndpointName=asynchronous, InputLocation=location
                )

            accepted = [submit(location) for location in inputs[:3]]  # some are running

            redis.process.send_signal(signal.SIGSTOP)
            try:
                wait_until(lambda: _stopped(redis.process.pid), 10, "redis-server to stop")
                # Accepting waits for Redis (the request is durable before its 202); it
                # must wait without holding the loop up, as must the dispatcher.
                waiting, waiting_done = _in_background(
                    {
                        location: lambda location=location: submit(location)
                        for location in inputs[3:]
                    }
                )

                def ping() -> int:
                    with urllib.request.urlopen(f"{server.url}/ping", timeout=60) as answer:
                        return int(answer.status)

                def invoke() -> list[int]:
                    answer = runtime.invoke_endpoint(
                        EndpointName=realtime,
                        ContentType="application/json",
                        Body=json.dumps(iris_rows(3)),
                    )
                    return list(json.loads(answer["Body"].read()))

                answers, answered = _in_background({"ping": ping, "invoke": invoke})
                answered.wait(60)  # a bound for the wait, not a measure
                seen = dict(answers)  # what arrived while Redis was stopped
                assert _stopped(redis.process.pid), "redis-server resumed before the answers"
                assert not waiting_done.is_set(), waiting  # those do wait for Redis
            finally:
                redis.process.send_signal(signal.SIGCONT)
            assert seen.get("ping") == 200, seen
            assert isinstance(seen.get("invoke"), list), seen
            assert len(seen["invoke"]) == 3, seen

            # Redis is back: the requests accepted meanwhile get their 202 and every
            # request is run.
            assert waiting_done.wait(60), waiting
            accepted += list(waiting.values())
            assert all(isinstance(answer, dict) for answer in accepted), accepted
            wait_until(
                lambda: all(
                    local_path(server.data_dir, answer["OutputLocation"]).is_file()
                    for answer in accepted
                ),
                120,
                "every asynchronous result",
            )
        finally:
            server.stop()


def test_a_request_accepted_while_redis_is_gone_is_a_retriable_503(tmp_path: Path) -> None:
    with redis_process(tmp_path) as redis:
        env = {"MODELHOST_ASYNC_QUEUE": redis.url}
        server = ServerProcess(tmp_path / "data", env=env).start()
        try:
            sagemaker = server.client("sagemaker")
            asynchronous = deploy_async(sagemaker, put_digest_model(server.data_dir))
            path = local_path(server.data_dir, "s3://inputs/0.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"n": 0}))
            redis.process.kill()
            redis.process.wait()
            runtime = server.client("sagemaker-runtime", retries=0)
            with pytest.raises(ClientError) as refused:
                runtime.invoke_endpoint_async(
                    EndpointName=asynchronous, InputLocation="s3://inputs/0.json"
                )
            error = refused.value.response
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert error["Error"]["Code"] == "ServiceUnavailable"
            assert "queue cannot be reached" in error["Error"]["Message"]
        finally:
            server.stop()
