"""CloudWatch metric history end to end: a real server records its endpoints' metrics
(flushed every second here), and boto3's cloudwatch client and the AWS CLI read them with
SageMaker's namespaces and dimensions; users' own metrics go in with PutMetricData."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.autoscaling import FAST_AUTOSCALING
from tests.support.aws import aws_cli_env, cloudwatch_held_to
from tests.support.cloudwatch import recent, variant
from tests.support.endpoints import deploy, deploy_serverless, held_invocations, unique
from tests.support.models import iris_rows, put_gated_model, put_iris_model
from tests.support.processes import wait_until
from tests.support.server import ServerProcess, running_server

AWS = Path(sys.executable).parent / "aws"
UTC = datetime.UTC
N = 37


@pytest.fixture(scope="module")
def history_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("history") / "data",
        env={"MODELHOST_METRICS_FLUSH_INTERVAL": "1", **FAST_AUTOSCALING},
    ) as process:
        put_iris_model(process.data_dir)
        yield process


@pytest.fixture(scope="module")
def cw(history_server: ServerProcess) -> Any:
    """boto3's own choice of protocol (AWS JSON 1.0 in 1.43)."""
    return history_server.client("cloudwatch")


@pytest.fixture(scope="module", params=["smithy-rpc-v2-cbor", "json"])
def held_cw(
    request: pytest.FixtureRequest,
    history_server: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    return cloudwatch_held_to(history_server.url, tmp_path_factory.mktemp("models"), request.param)


def _dimensions(endpoint: str) -> list[dict[str, str]]:
    return [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]


def _window() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(UTC)
    return now - datetime.timedelta(minutes=10), now + datetime.timedelta(minutes=1)


@pytest.fixture(scope="module")
def loaded(history_server: ServerProcess) -> tuple[str, list[float]]:
    """An endpoint that answered exactly N invocations; the client-side latencies (s)."""
    sagemaker = history_server.client("sagemaker")
    runtime = history_server.client("sagemaker-runtime")
    name = deploy(sagemaker, "s3://models/iris/model.tar.gz")
    body = json.dumps(iris_rows(3))
    seen = []
    for _ in range(N):
        started = time.perf_counter()
        runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
        seen.append(time.perf_counter() - started)
    yield name, seen
    sagemaker.delete_endpoint(EndpointName=name)


def _sum(cw: Any, endpoint: str, metric: str) -> float:
    points = recent(cw, "AWS/SageMaker", metric, variant(endpoint), 60, ["Sum"], minutes=10)
    return sum(p["Sum"] for p in points)


def test_invocations_of_a_known_load_sum_to_n(cw: Any, loaded: tuple[str, list[float]]) -> None:
    name, _ = loaded
    wait_until(lambda: _sum(cw, name, "Invocations") == N, timeout_s=30, what="N invocations")
    assert _sum(cw, name, "Invocation4XXErrors") == 0
    assert _sum(cw, name, "Invocation5XXErrors") == 0


def test_latency_statistics_and_percentiles(cw: Any, loaded: tuple[str, list[float]]) -> None:
    name, seen = loaded

    def latency() -> dict[str, Any]:
        points = recent(
            cw,
            "AWS/SageMaker",
            "ModelLatency",
            variant(name),
            86400,  # one period holds the whole window
            ["SampleCount", "Minimum", "Maximum", "Average"],
            ["p50", "p99", "p99.9"],
            minutes=10,
        )
        return points[0] if len(points) == 1 else {}

    wait_until(lambda: latency().get("SampleCount") == N, timeout_s=30, what="N latencies")
    point = latency()
    assert point["Unit"] == "Microseconds"
    # The model's time is part of what the client waited for.
    assert 0 < point["Minimum"] <= point["Average"] <= point["Maximum"] <= max(seen) * 1e6
    for stat in ("p50", "p99", "p99.9"):
        assert point["Minimum"] <= point["ExtendedStatistics"][stat] <= point["Maximum"]
    assert point["ExtendedStatistics"]["p50"] <= point["ExtendedStatistics"]["p99"]


def test_get_metric_data_pages_and_scans(cw: Any, loaded: tuple[str, list[float]]) -> None:
    name, _ = loaded
    wait_until(lambda: _sum(cw, name, "Invocations") == N, timeout_s=30, what="N invocations")
    start, end = _window()

    def query(query_id: str, metric: str, stat: str, namespace: str = "AWS/SageMaker") -> dict:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": metric,
                    "Dimensions": _dimensions(name),
                },
                "Period": 10,
                "Stat": stat,
            },
        }

    queries = [
        query("calls", "Invocations", "Sum"),
        query("latency", "OverheadLatency", "p99"),
        query("instances", "InstanceCount", "Maximum", "Modelhost/Endpoints"),
    ]
    whole = cw.get_metric_data(
        MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending"
    )
    results = {r["Id"]: r for r in whole["MetricDataResults"]}
    assert sum(results["calls"]["Values"]) == N
    assert results["calls"]["Label"] == "Invocations"
    assert all(v > 0 for v in results["latency"]["Values"])
    assert results["instances"]["Values"] and max(results["instances"]["Values"]) == 1
    stamps = results["instances"]["Timestamps"]
    assert stamps == sorted(stamps)
    # Two datapoints a page: the pages together are the whole answer, newest first.
    pages = cw.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries[:1],
        StartTime=start,
        EndTime=end,
        MaxDatapoints=2,
    )
    values, times = [], []
    for page in pages:
        (result,) = page["MetricDataResults"]
        assert len(result["Values"]) <= 2
        values += result["Values"]
        times += result["Timestamps"]
    assert sum(values) == N
    assert times == sorted(times, reverse=True)


def test_instance_metrics_and_list_metrics(cw: Any, loaded: tuple[str, list[float]]) -> None:
    name, _ = loaded

    def listed() -> set[tuple[str, str]]:
        metrics = cw.list_metrics(Dimensions=[{"Name": "EndpointName", "Value": name}])
        return {(m["Namespace"], m["MetricName"]) for m in metrics["Metrics"]}

    wanted = {
        ("AWS/SageMaker", "Invocations"),
        ("AWS/SageMaker", "ModelLatency"),
        ("AWS/SageMaker", "OverheadLatency"),
        ("AWS/SageMaker", "InvocationsPerInstance"),
        ("AWS/SageMaker", "ConcurrentRequestsPerModel"),
        ("/aws/sagemaker/Endpoints", "CPUUtilization"),
        ("/aws/sagemaker/Endpoints", "MemoryUtilization"),
        ("Modelhost/Endpoints", "InstanceCount"),
    }
    wait_until(lambda: wanted <= listed(), timeout_s=30, what="the endpoint's metrics")
    memory = cw.list_metrics(Namespace="/aws/sagemaker/Endpoints", MetricName="MemoryUtilization")
    dims = [m["Dimensions"] for m in memory["Metrics"]]
    assert sorted(_dimensions(name), key=lambda d: d["Name"]) in dims
    points = recent(
        cw, "/aws/sagemaker/Endpoints", "MemoryUtilization", variant(name), 600, ["Maximum"]
    )
    assert 0 < points[0]["Maximum"] < 100 and points[0]["Unit"] == "Percent"


def _peak(cw: Any, endpoint: str, namespace: str, metric: str) -> tuple[float, str] | None:
    """The Maximum of a metric over the last minutes and its unit; None before any."""
    points = recent(cw, namespace, metric, variant(endpoint), 600, ["Maximum"], minutes=10)
    return (max(p["Maximum"] for p in points), points[0]["Unit"]) if points else None


def test_serverless_concurrency_of_held_requests(
    cw: Any, history_server: ServerProcess, tmp_path: Path
) -> None:
    """Three requests held in flight at once on a serverless variant of MaxConcurrency 4:
    its ConcurrentExecutions peak at 3 and its ServerlessConcurrentExecutionsUtilization
    at 0.75, both under EndpointName and VariantName."""
    gate = tmp_path / "open"
    url = put_gated_model(history_server.data_dir, gate)
    sagemaker = history_server.client("sagemaker")
    name = deploy_serverless(sagemaker, url, max_concurrency=4, image="modelhost/python")
    runtime = history_server.client("sagemaker-runtime", retries=0)
    with held_invocations(runtime, name, 3, gate):
        wait_until(
            lambda: (
                _peak(cw, name, "Modelhost/Endpoints", "ConcurrentExecutions") == (3.0, "Count")
            ),
            timeout_s=60,
            what="3 concurrent executions recorded",
        )
    assert _peak(cw, name, "AWS/SageMaker", "ServerlessConcurrentExecutionsUtilization") == (
        0.75,
        "None",
    )
    listed = cw.list_metrics(
        Namespace="AWS/SageMaker", MetricName="ServerlessConcurrentExecutionsUtilization"
    )["Metrics"]
    assert sorted(_dimensions(name), key=lambda d: d["Name"]) in [m["Dimensions"] for m in listed]


def test_put_metric_data_round_trip(cw: Any) -> None:
    namespace = unique("Team/Models")
    now = datetime.datetime.now(UTC)
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "Accuracy",
                "Dimensions": [{"Name": "Model", "Value": "iris"}],
                "Values": [0.5, 0.9, 0.95],
                "Counts": [1, 8, 1],
                "Unit": "Percent",
                "Timestamp": now,
            },
            {
                "MetricName": "Accuracy",
                "Dimensions": [{"Name": "Model", "Value": "iris"}],
                "StatisticValues": {"SampleCount": 10, "Sum": 9.0, "Minimum": 0.8, "Maximum": 1.0},
                "Unit": "Percent",
                "Timestamp": now,
            },
            {"MetricName": "Runs", "Value": 3},
        ],
    )
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(minutes=5)
    (point,) = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName="Accuracy",
        Dimensions=[{"Name": "Model", "Value": "iris"}],
        StartTime=start,
        EndTime=end,
        Period=600,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"],
        ExtendedStatistics=["p50"],
    )["Datapoints"]
    assert point["SampleCount"] == 20
    assert point["Sum"] == pytest.approx(0.5 + 7.2 + 0.95 + 9.0)
    assert (point["Minimum"], point["Maximum"]) == (0.5, 1.0)
    # Percentiles come from the values sent (the statistic set carries none).
    assert point["ExtendedStatistics"]["p50"] == pytest.approx(0.9, rel=0.02)
    listed = cw.list_metrics(Namespace=namespace)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["Accuracy", "Runs"]
    # A unit the metric was never put with has no data, as on CloudWatch.
    assert not cw.get_metric_statistics(
        Namespace=namespace,
        MetricName="Runs",
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=["Sum"],
        Unit="Seconds",
    )["Datapoints"]


def _refused(call: Any, match: str, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert status == 400, error
    assert error["Code"] in ("ValidationError", "ValidationException"), error
    assert match in error["Message"], error


def test_bad_input_is_a_validation_error(cw: Any) -> None:
    start, end = _window()
    metric = {"Namespace": "AWS/SageMaker", "MetricName": "Invocations"}
    stat = {"Metric": metric, "Period": 60, "Stat": "Sum"}
    _refused(
        cw.get_metric_data,
        "Expression",
        MetricDataQueries=[{"Id": "m", "Expression": "SUM(METRICS())"}],
        StartTime=start,
        EndTime=end,
    )
    for bad_stat, match in (("tm90", "tm90"), ("p101", "p101")):
        _refused(
            cw.get_metric_data,
            match,
            MetricDataQueries=[{"Id": "m", "MetricStat": {**stat, "Stat": bad_stat}}],
            StartTime=start,
            EndTime=end,
        )
    _refused(
        cw.get_metric_data,
        "period",
        MetricDataQueries=[{"Id": "m", "MetricStat": {**stat, "Period": 5}}],
        StartTime=start,
        EndTime=end,
    )
    _refused(
        cw.get_metric_data,
        "Id",
        MetricDataQueries=[{"Id": "Bad-Id", "MetricStat": stat}],
        StartTime=start,
        EndTime=end,
    )
    _refused(
        cw.get_metric_data,
        "NextToken",
        MetricDataQueries=[{"Id": "m", "MetricStat": stat}],
        StartTime=start,
        EndTime=end,
        NextToken="garbage",
    )
    _refused(
        cw.get_metric_statistics,
        "StartTime",
        **metric,
        StartTime=end,
        EndTime=start,
        Period=60,
        Statistics=["Sum"],
    )
    _refused(
        cw.get_metric_statistics,
        "1,440",
        **metric,
        StartTime=end - datetime.timedelta(days=2),
        EndTime=end,
        Period=60,
        Statistics=["Sum"],
    )
    _refused(cw.get_metric_statistics, "Statistics", **metric, StartTime=start, EndTime=end,
             Period=60)  # fmt: skip
    _refused(
        cw.put_metric_data,
        "AWS/",
        Namespace="AWS/SageMaker",
        MetricData=[{"MetricName": "Invocations", "Value": 1}],
    )
    _refused(
        cw.put_metric_data,
        "StorageResolution",
        Namespace="Mine",
        MetricData=[{"MetricName": "x", "Value": 1, "StorageResolution": 1}],
    )
    _refused(
        cw.put_metric_data,
        "exactly one",
        Namespace="Mine",
        MetricData=[{"MetricName": "x", "Value": 1, "Values": [1.0]}],
    )
    _refused(
        cw.put_metric_data,
        "out of range",
        Namespace="Mine",
        MetricData=[
            {
                "MetricName": "x",
                "Value": 1,
                "Timestamp": datetime.datetime.now(UTC) - datetime.timedelta(days=30),
            }
        ],
    )


def test_history_survives_a_restart(tmp_path: Path) -> None:
    namespace = unique("Restart")
    with running_server(tmp_path / "data") as first:
        first.client("cloudwatch").put_metric_data(
            Namespace=namespace, MetricData=[{"MetricName": "kept", "Value": 2.5}]
        )
        first.stop()
        restarted = first.restarted()
        try:
            start, end = _window()
            points = restarted.client("cloudwatch").get_metric_statistics(
                Namespace=namespace,
                MetricName="kept",
                StartTime=start,
                EndTime=end,
                Period=60,
                Statistics=["Sum"],
            )["Datapoints"]
        finally:
            restarted.stop()
    assert [p["Sum"] for p in points] == [2.5]


@pytest.fixture(scope="module")
def aws(history_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not AWS.exists():
        pytest.skip(f"AWS CLI not installed at {AWS}")
    home = tmp_path_factory.mktemp("aws-home")
    env = aws_cli_env(home)

    def call(*args: str) -> Any:
        done = subprocess.run(
            [
                str(AWS),
                "cloudwatch",
                *args,
                *("--endpoint-url", history_server.url, "--region", "us-east-1"),
                *("--output", "json"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{done.args}\n{done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    return call


def test_aws_cli(aws: Any, cw: Any, loaded: tuple[str, list[float]]) -> None:
    name, _ = loaded
    wait_until(lambda: _sum(cw, name, "Invocations") == N, timeout_s=30, what="N invocations")
    start, end = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in _window())
    dimensions = f"Name=EndpointName,Value={name}", "Name=VariantName,Value=AllTraffic"
    stats = aws(
        "get-metric-statistics",
        "--namespace",
        "AWS/SageMaker",
        "--metric-name",
        "Invocations",
        "--dimensions",
        *dimensions,
        "--start-time",
        start,
        "--end-time",
        end,
        "--period",
        "60",
        "--statistics",
        "Sum",
    )
    assert sum(p["Sum"] for p in stats["Datapoints"]) == N
    queries = [
        {
            "Id": "calls",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SageMaker",
                    "MetricName": "Invocations",
                    "Dimensions": _dimensions(name),
                },
                "Period": 60,
                "Stat": "Sum",
            },
        }
    ]
    data = aws(
        "get-metric-data",
        "--metric-data-queries",
        json.dumps(queries),
        "--start-time",
        start,
        "--end-time",
        end,
    )
    assert sum(data["MetricDataResults"][0]["Values"]) == N
    listed = aws("list-metrics", "--namespace", "AWS/SageMaker", "--dimensions",
                 f"Name=EndpointName,Value={name}")  # fmt: skip
    assert "ModelLatency" in {m["MetricName"] for m in listed["Metrics"]}
    namespace = unique("Cli")
    aws("put-metric-data", "--namespace", namespace, "--metric-name", "Score", "--value", "4")
    put = aws(
        "get-metric-statistics",
        "--namespace",
        namespace,
        "--metric-name",
        "Score",
        "--start-time",
        start,
        "--end-time",
        end,
        "--period",
        "60",
        "--statistics",
        "Sum",
    )
    assert [p["Sum"] for p in put["Datapoints"]] == [4.0]


def test_large_put_metric_data_is_gzipped_and_read(held_cw: Any) -> None:
    """1500 values (CloudWatch's 150 a datum): past botocore's 10 KB threshold in either
    protocol, so the body goes gzip-compressed."""
    client = held_cw
    protocol = client.meta.service_model.protocol
    namespace = unique("Bulk")
    now = datetime.datetime.now(UTC)
    values = [v + 0.000123456 for v in range(1, 1501)]
    sent: list[dict[str, bytes]] = []
    client.meta.events.register(
        "before-send.cloudwatch.PutMetricData",
        lambda request, **_: sent.append(dict(request.headers)),
    )
    client.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Latency", "Values": values[i : i + 150], "Timestamp": now}
            for i in range(0, len(values), 150)
        ],
    )
    assert sent[-1].get("Content-Encoding") in ("gzip", b"gzip")
    content_type = sent[-1].get("Content-Type", b"")
    assert (b"cbor" in content_type) == (protocol == "smithy-rpc-v2-cbor"), content_type
    (point,) = client.get_metric_statistics(
        Namespace=namespace,
        MetricName="Latency",
        StartTime=now - datetime.timedelta(minutes=2),
        EndTime=now + datetime.timedelta(minutes=2),
        Period=240,
        Statistics=["SampleCount", "Sum", "Maximum"],
        ExtendedStatistics=["p90"],
    )["Datapoints"]
    assert point["SampleCount"] == 1500
    assert point["Sum"] == pytest.approx(sum(values))
    assert point["Maximum"] == values[-1]
    assert point["ExtendedStatistics"]["p90"] == pytest.approx(1350, rel=0.02)
    data = client.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "p",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": "Latency"},
                    "Period": 60,
                    "Stat": "p50",
                },
            }
        ],
        StartTime=now - datetime.timedelta(minutes=2),
        EndTime=now + datetime.timedelta(minutes=2),
    )["MetricDataResults"][0]
    assert data["Values"][0] == pytest.approx(750, rel=0.02)
    assert isinstance(data["Timestamps"][0], datetime.datetime)


def test_errors_are_validation_errors_in_either_protocol(held_cw: Any) -> None:
    start, end = _window()
    _refused(
        held_cw.get_metric_data,
        "Expression",
        MetricDataQueries=[{"Id": "m", "Expression": "SUM(METRICS())"}],
        StartTime=start,
        EndTime=end,
    )


def test_alarms_evaluate_the_history(cw: Any, loaded: tuple[str, list[float]]) -> None:
    """A user's metric and a latency percentile: neither is a scaling metric, so their
    alarms read the recorded history."""
    namespace, mine, latency = unique("Alarmed"), unique("queue"), unique("p99")

    def state(name: str) -> str:
        return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]

    common = {"EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold"}
    cw.put_metric_alarm(
        AlarmName=mine,
        Namespace=namespace,
        MetricName="Queue",
        Statistic="Maximum",
        Period=60,
        Threshold=5,
        **common,
    )
    endpoint, _ = loaded
    cw.put_metric_alarm(
        AlarmName=latency,
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=_dimensions(endpoint),
        ExtendedStatistic="p99",
        Period=3600,
        Threshold=1,  # microseconds: any model is slower
        **common,
    )
    try:
        cw.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Queue", "Value": 2}])
        wait_until(lambda: state(mine) == "OK", timeout_s=30, what="OK below the threshold")
        cw.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Queue", "Value": 9}])
        wait_until(lambda: state(mine) == "ALARM", timeout_s=30, what="ALARM past it")
        wait_until(lambda: state(latency) == "ALARM", timeout_s=30, what="the p99 alarm")
    finally:
        cw.delete_alarms(AlarmNames=[mine, latency])


def test_history_off_records_nothing_and_says_so(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", env={"MODELHOST_METRICS_HISTORY": "0"}) as server:
        start, end = _window()
        with pytest.raises(ClientError) as caught:
            server.client("cloudwatch").get_metric_statistics(
                Namespace="AWS/SageMaker",
                MetricName="Invocations",
                StartTime=start,
                EndTime=end,
                Period=60,
                Statistics=["Sum"],
            )
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "MODELHOST_METRICS_HISTORY" in caught.value.response["Error"]["Message"]
        assert not (server.data_dir / "metrics.db").exists()
