"""CloudWatch Logs over the instances' logs, as SageMaker names them: boto3's `logs`
client and the AWS CLI's `logs` commands against the server, paged as AWS pages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import aws_cli_env
from tests.support.cli import run_cli
from tests.support.endpoints import deploy, unique
from tests.support.models import put_model
from tests.support.server import ServerProcess

AWS = Path(sys.executable).parent / "aws"

# Prints a marker per request to the instance's stdout: its log.
_PRINTING = b"""
import sys
def model_fn(model_dir):
    print("model loaded", flush=True)
    return None
def transform_fn(model, body, content_type, accept):
    for line in body.decode().splitlines():
        print("request " + line, flush=True)
    return body, "text/plain"
"""


def _events_until(logs, group: str, stream: str, wanted: str, timeout_s: float = 30) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)[
            "events"
        ]
        if any(wanted in e["message"] for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def _aws_logs(env: dict[str, str], *args: str) -> str:
    """`aws logs <args> --output text` in `env`, which must succeed; its stdout."""
    done = subprocess.run(
        [str(AWS), "logs", *args, "--output", "text"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def printing_endpoint(server: ServerProcess, sagemaker, runtime) -> str:
    url = put_model(
        server.data_dir, f"printing-{uuid.uuid4().hex[:6]}", {"code/inference.py": _PRINTING}
    )
    name = deploy(sagemaker, url, image="modelhost/python")
    for i in range(5):
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=f"line-{i}")
    return name


def test_endpoint_instance_log_is_a_log_group(server: ServerProcess, printing_endpoint: str):
    logs = server.client("logs")
    group = f"/aws/sagemaker/Endpoints/{printing_endpoint}"
    groups = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    (stream,) = [s["logStreamName"] for s in streams]
    assert stream.startswith("AllTraffic/")

    events = _events_until(logs, group, stream, "request line-4")
    messages = [e["message"] for e in events]
    assert "model loaded" in messages
    assert [m for m in messages if m.startswith("request ")] == [
        f"request line-{i}" for i in range(5)
    ]
    # Paged one event at a time, forward tokens walk the same events, then stay put.
    walked, token = [], None
    while True:
        page = logs.get_log_events(
            logGroupName=group,
            logStreamName=stream,
            startFromHead=True,
            limit=1,
            **({"nextToken": token} if token else {}),
        )
        if not page["events"]:
            assert page["nextForwardToken"] == token
            break
        walked += page["events"]
        token = page["nextForwardToken"]
    assert [e["message"] for e in walked] == messages[: len(walked)]
    assert len(walked) >= len(messages)
    # A line's timestamp does not change between reads.
    again = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    assert [e["timestamp"] for e in again["events"][: len(events)]] == [
        e["timestamp"] for e in events
    ]
    # Without startFromHead, the newest events; the backward token pages to older ones.
    tail = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2)
    assert [e["message"] for e in tail["events"]] == messages[-2:] or len(messages) > len(walked)
    older = logs.get_log_events(
        logGroupName=group, logStreamName=stream, limit=2, nextToken=tail["nextBackwardToken"]
    )
    assert [e["message"] for e in older["events"]] == [e["message"] for e in walked[-4:-2]]


def test_filter_log_events_pages_and_filters(server: ServerProcess, printing_endpoint: str):
    logs = server.client("logs")
    group = f"/aws/sagemaker/Endpoints/{printing_endpoint}"
    _events_until(
        logs,
        group,
        logs.describe_log_streams(logGroupName=group)["logStreams"][0]["logStreamName"],
        "request line-4",
    )
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=group, filterPattern='"request line"', PaginationConfig={"PageSize": 2}
    )
    found = [e["message"] for page in pages for e in page["events"]]
    assert found == [f"request line-{i}" for i in range(5)]
    with pytest.raises(ClientError) as caught:
        logs.filter_log_events(logGroupName=group, filterPattern="{ $.level = 1 }")
    assert "filterPattern" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        logs.describe_log_streams(logGroupName="/aws/sagemaker/Endpoints/no-such-endpoint")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.skipif(not AWS.exists(), reason=f"AWS CLI not installed at {AWS}")
def test_cli_logs_commands(server: ServerProcess, printing_endpoint: str, tmp_path: Path):
    env = aws_cli_env(tmp_path, server.url)
    group = f"/aws/sagemaker/Endpoints/{printing_endpoint}"
    # `aws logs tail` is the CLI v2's (not on PyPI); v1 follows a stream with these.
    streams = _aws_logs(
        env, "describe-log-streams", "--log-group-name", group,
        "--query", "logStreams[].logStreamName",
    )  # fmt: skip
    events = _aws_logs(
        env, "get-log-events", "--log-group-name", group,
        "--log-stream-name", streams.strip(), "--start-from-head",
        "--query", "events[].message",
    )  # fmt: skip
    assert "request line-4" in events
    filtered = _aws_logs(
        env, "filter-log-events", "--log-group-name", group,
        "--filter-pattern", '"request line-3"', "--query", "events[].message",
    )  # fmt: skip
    assert filtered.strip() == "request line-3"


def test_transform_job_log_is_in_the_transform_group(server: ServerProcess, sagemaker):
    model = unique("tlog")
    url = put_model(server.data_dir, model, {"code/inference.py": _PRINTING})
    sagemaker.create_model(
        ModelName=model,
        PrimaryContainer={"Image": "modelhost/python", "ModelDataUrl": url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    source = server.data_dir / "objects" / "batch" / model / "in.txt"
    source.parent.mkdir(parents=True)
    source.write_text("alpha\nbeta\n")
    job = unique("tj")
    sagemaker.create_transform_job(
        TransformJobName=job,
        ModelName=model,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://batch/{model}/"}
            },
            "ContentType": "text/plain",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://batch/{model}-out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=job, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    logs = server.client("logs")
    streams = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TransformJobs", logStreamNamePrefix=f"{job}/"
    )["logStreams"]
    (stream,) = [s["logStreamName"] for s in streams]
    messages = [
        e["message"]
        for e in logs.get_log_events(
            logGroupName="/aws/sagemaker/TransformJobs", logStreamName=stream, startFromHead=True
        )["events"]
    ]
    assert "request alpha" in messages and "request beta" in messages
    # A transform job's log is not an endpoint's group.
    with pytest.raises(ClientError):
        logs.describe_log_streams(logGroupName=f"/aws/sagemaker/Endpoints/{job}")


def _modelhost_logs(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("endpoints", "logs", *args, url=server.url, timeout=60)


def test_modelhost_endpoints_logs(server: ServerProcess, printing_endpoint: str, runtime):
    """`modelhost endpoints logs NAME`: every instance line, oldest first, with its time
    and stream, read through the server's CloudWatch Logs API."""
    deadline = time.monotonic() + 30
    while True:
        result = _modelhost_logs(server, printing_endpoint)
        assert result.returncode == 0, result.stderr
        if "request line-4" in result.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lines = result.stdout.splitlines()
    messages = [line.split(" ", 2)[2] for line in lines]
    assert "model loaded" in messages
    assert [m for m in messages if m.startswith("request line-")] == [
        f"request line-{i}" for i in range(5)
    ]
    assert all(line.split(" ", 2)[1].startswith("AllTraffic/") for line in lines)
    stamps = [line.split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps)  # oldest first (ISO times sort as text)

    assert _modelhost_logs(server, printing_endpoint, "--variant", "AllTraffic").stdout == (
        result.stdout
    )
    other = _modelhost_logs(server, printing_endpoint, "--variant", "Other")
    assert (other.returncode, other.stdout) == (0, "")
    assert _modelhost_logs(server, printing_endpoint, "--since", "1h").stdout == result.stdout
    future = _modelhost_logs(server, printing_endpoint, "--since", "2999-01-01T00:00:00")
    assert (future.returncode, future.stdout) == (0, "")

    bad = _modelhost_logs(server, printing_endpoint, "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    missing = _modelhost_logs(server, "no-such-endpoint")
    assert missing.returncode == 1 and "no-such-endpoint" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_modelhost_endpoints_logs_follows(server: ServerProcess, printing_endpoint: str, runtime):
    """`-f` prints what is there, then each new line once, until interrupted."""
    command = [sys.executable, "-m", "modelhost", "endpoints", "logs", printing_endpoint, "-f"]
    follower = subprocess.Popen(
        [*command, "--endpoint-url", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    seen: list[str] = []

    def read_until(wanted: str) -> None:
        assert follower.stdout is not None
        while not any(line.endswith(wanted) for line in seen):
            line = follower.stdout.readline()
            assert line, f"the follower ended before {wanted!r}: {follower.stderr.read()}"
            seen.append(line.rstrip("\n"))

    try:
        read_until("request line-4")
        marker = f"followed-{uuid.uuid4().hex[:6]}"
        runtime.invoke_endpoint(
            EndpointName=printing_endpoint, ContentType="text/plain", Body=marker
        )
        read_until(f"request {marker}")
        follower.send_signal(signal.SIGINT)
        rest, _ = follower.communicate(timeout=30)
        seen.extend(rest.splitlines())
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0
    assert len(seen) == len(set(seen)), "a line was printed twice"
    assert [line for line in seen if line.endswith(f"request {marker}")] != []
