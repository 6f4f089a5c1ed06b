"""An asynchronous endpoint scaled to zero starts an instance when a request waits, and
reports its backlog by the CloudWatch metric names."""

from __future__ import annotations

import json
import re
import urllib.request

from modelhost import metrics
from tests.support.async_inference import (
    deploy_async,
    local_path,
    put_digest_model,
    wait_for_object,
)
from tests.support.endpoints import wait_for_status
from tests.support.processes import wait_until
from tests.support.server import ServerProcess, running_server


def _metric(server: ServerProcess, name: str, endpoint: str) -> float | None:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf'^{name}{{endpoint="{endpoint}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def _scale(sagemaker, endpoint: str, count: int) -> None:
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": count}],
    )
    described = wait_for_status(sagemaker, endpoint, {"InService"})
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == count


def test_queued_request_starts_an_instance_and_backlog_is_measured(tmp_path) -> None:
    # One instance allowed: the second endpoint cannot scale up until the first lets go.
    with running_server(
        tmp_path / "data",
        env={
            "MODELHOST_MAX_INSTANCES": "1",
            "MODELHOST_ASYNC_POLL_INTERVAL": "0.2",
            "MODELHOST_ASYNC_MIN_TTL": "1",
        },
    ) as server:
        sagemaker = server.client("sagemaker")
        model = put_digest_model(server.data_dir)
        holder = deploy_async(sagemaker, model)
        _scale(sagemaker, holder, 0)
        waiting = deploy_async(sagemaker, model)
        _scale(sagemaker, waiting, 0)
        _scale(sagemaker, holder, 1)

        path = local_path(server.data_dir, "s3://inputs/zero.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(json.dumps({"n": 1}).encode())
        answer = server.client("sagemaker-runtime").invoke_endpoint_async(
            EndpointName=waiting,
            InputLocation="s3://inputs/zero.json",
            ContentType="application/json",
        )
        wait_until(
            lambda: _metric(server, "modelhost_async_has_backlog_without_capacity", waiting) == 1,
            30,
            "HasBacklogWithoutCapacity",
        )
        assert _metric(server, "modelhost_async_backlog_size", waiting) == 1
        assert "cannot scale from zero" in server.log()
        assert not local_path(server.data_dir, answer["OutputLocation"]).exists()

        # A request whose TTL runs out while no instance can take it ends as a failure.
        request = urllib.request.Request(
            f"{server.url}/endpoints/{waiting}/async-invocations",
            data=b"",
            method="POST",
            headers={
                "X-Amzn-SageMaker-InputLocation": "s3://inputs/zero.json",
                "X-Amzn-SageMaker-RequestTTLSeconds": "1",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            failure = response.headers["X-Amzn-SageMaker-FailureLocation"]
            output = response.headers["X-Amzn-SageMaker-OutputLocation"]
        assert wait_for_object(server.data_dir, output, failure) == failure
        assert "RequestTTLSeconds" in local_path(server.data_dir, failure).read_text()

        _scale(sagemaker, holder, 0)  # frees the quota: the waiting request gets its instance
        found = wait_for_object(
            server.data_dir, answer["OutputLocation"], answer["FailureLocation"], timeout_s=90
        )
        assert found == answer["OutputLocation"]
        described = sagemaker.describe_endpoint(EndpointName=waiting)
        assert described["ProductionVariants"][0]["DesiredInstanceCount"] == 1
        wait_until(
            lambda: _metric(server, "modelhost_async_backlog_size", waiting) == 0,
            30,
            "the backlog to empty",
        )
        assert _metric(server, "modelhost_async_has_backlog_without_capacity", waiting) == 0


def test_backlog_metrics_by_cloudwatch_name() -> None:
    metrics.ASYNC_BACKLOG.labels("metric-test").set(7)
    metrics.ASYNC_BACKLOG_PER_INSTANCE.labels("metric-test").set(3.5)
    metrics.ASYNC_BACKLOG_WITHOUT_CAPACITY.labels("metric-test").set(0)
    assert metrics.async_backlog_metric("ApproximateBacklogSize", "metric-test") == 7
    assert metrics.async_backlog_metric("ApproximateBacklogSizePerInstance", "metric-test") == 3.5
    assert metrics.async_backlog_metric("HasBacklogWithoutCapacity", "metric-test") == 0
    assert metrics.async_backlog_metric("ApproximateBacklogSize", "never-measured") is None
    assert metrics.async_backlog_metric("CPUUtilization", "metric-test") is None
