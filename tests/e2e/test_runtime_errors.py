"""What a user sees when things go wrong on the runtime path."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy
from tests.support.models import iris_rows, put_breakable_model, put_model
from tests.support.processes import instance_pids, kill_and_wait

FAILING_CODE = b"""
import json, time
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    request = json.loads(body)
    if request.get("sleep"):
        time.sleep(request["sleep"])
        return json.dumps({"slept": request["sleep"]}), "application/json"
    raise ValueError("the model refuses: " + request.get("why", "no reason"))
"""


@pytest.fixture(scope="module")
def failing_endpoint(server, sagemaker) -> str:
    url = put_model(server.data_dir, "failing", {"code/inference.py": FAILING_CODE})
    return deploy(
        sagemaker,
        url,
        image="modelhost/python",
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "4"},
    )


def _code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_unknown_endpoint_names_it(runtime) -> None:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"1")
    assert _code(excinfo) == "ValidationError"
    assert "no-such-endpoint" in excinfo.value.response["Error"]["Message"]
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_payload_over_6mb_is_refused_before_the_model(runtime, failing_endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=failing_endpoint,
            ContentType="application/json",
            Body=b"x" * (6 * 1024 * 1024 + 1),
        )
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6 MB" in excinfo.value.response["Error"]["Message"]


def test_payload_over_6mb_chunked_is_refused(server, failing_endpoint: str) -> None:
    def chunks():  # no Content-Length: the limit must hold while the body streams in
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    request = urllib.request.Request(
        f"{server.url}/endpoints/{failing_endpoint}/invocations",
        method="POST",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request)
    assert excinfo.value.code == 413


def test_model_raising_is_a_model_error(runtime, failing_endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=failing_endpoint,
            ContentType="application/json",
            Body=json.dumps({"why": "bad feature"}),
        )
    error = excinfo.value.response
    assert _code(excinfo) == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    assert "the model refuses: bad feature" in error["OriginalMessage"]


def test_slow_model_times_out_as_model_error(runtime, failing_endpoint: str) -> None:
    # The session server runs with MODELHOST_MODEL_TIMEOUT=5.
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=failing_endpoint,
            ContentType="application/json",
            Body=json.dumps({"sleep": 8}),
        )
    assert _code(excinfo) == "ModelError"
    assert "timed out" in excinfo.value.response["Error"]["Message"]
    # the instance is still healthy afterwards
    answer = runtime.invoke_endpoint(
        EndpointName=failing_endpoint,
        ContentType="application/json",
        Body=json.dumps({"sleep": 0.01}),
    )
    assert json.loads(answer["Body"].read()) == {"slept": 0.01}


def test_request_waits_for_a_replacement_instance(
    server, sagemaker, runtime, iris_model_url: str
) -> None:
    """The only instance died: a request waits for its replacement instead of failing."""
    name = deploy(sagemaker, iris_model_url)
    (pid,) = instance_pids(server.process.pid, name)
    kill_and_wait(pid)
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert instance_pids(server.process.pid, name) != [pid]


def test_no_instance_within_the_model_timeout_is_service_unavailable(
    server, sagemaker, runtime, tmp_path
) -> None:
    """The only instance died and its replacements cannot start (its model_fn refuses
    once a marker file exists): past the model timeout (5 s on the session server) the
    waiting request gets a retriable 503, not a 400."""
    marker = tmp_path / "broken"
    url = put_breakable_model(server.data_dir, "breaks-on-restart", marker)
    name = deploy(sagemaker, url, image="modelhost/python")
    (pid,) = instance_pids(server.process.pid, name)
    marker.write_text("x")
    kill_and_wait(pid)
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"x")
    assert _code(excinfo) == "ServiceUnavailable"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_bad_input_never_500s(server, failing_endpoint: str) -> None:
    cases = [
        ("POST", "/", {"X-Amz-Target": "SageMaker.CreateModel"}, b"[1,2]"),
        ("POST", "/", {"X-Amz-Target": "SageMaker.ListModels"}, b'{"MaxResults": "x"}'),
        ("POST", "/", {}, b"{}"),
        ("GET", "/nowhere", {}, None),
        (
            "POST",
            f"/endpoints/{failing_endpoint}/invocations",
            {"X-Amzn-SageMaker-Target-Variant": "nope"},
            b"{}",
        ),
    ]
    for method, path, headers, body in cases:
        request = urllib.request.Request(
            server.url + path, method=method, data=body, headers=headers
        )
        try:
            urllib.request.urlopen(request)
        except urllib.error.HTTPError as error:
            assert 400 <= error.code < 500, (path, headers, error.code, error.read())


def test_metrics_count_invocations_and_latency(server, runtime, failing_endpoint: str) -> None:
    runtime.invoke_endpoint(
        EndpointName=failing_endpoint,
        ContentType="application/json",
        Body=json.dumps({"sleep": 0.001}),
    )
    with urllib.request.urlopen(f"{server.url}/metrics") as response:
        text = response.read().decode()
    label = f'endpoint="{failing_endpoint}",variant="AllTraffic"'
    assert f"modelhost_invocations_total{{{label}}}" in text
    assert f"modelhost_model_latency_seconds_count{{{label}}}" in text
    assert f"modelhost_overhead_latency_seconds_count{{{label}}}" in text
    assert "modelhost_invocation_4xx_errors_total" in text


def test_rows_in_csv_still_work_after_errors(runtime, sagemaker, iris_model_url) -> None:
    name = deploy(sagemaker, iris_model_url)
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="a,b,c")
    assert _code(excinfo) == "ModelError"
    ok = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body=",".join(map(str, iris_rows(1)[0]))
    )
    assert ok["Body"].read().strip() in (b"0", b"0.0")


GREEDY_CODE = b"""
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    hog = bytearray(int(body) * 1024 * 1024)
    return str(len(hog)), "text/plain"
"""


def test_instance_is_held_to_its_type_memory(server, sagemaker, runtime) -> None:
    """ml.m5.large has 8 GiB: a model asking for 9000 MB gets a MemoryError, the machine
    does not swap, and the instance keeps serving."""
    url = put_model(server.data_dir, "greedy", {"code/inference.py": GREEDY_CODE})
    name = deploy(sagemaker, url, image="modelhost/python")
    config = sagemaker.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    assert (
        sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0][
            "InstanceType"
        ]
        == "ml.m5.large"
    )
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"9000")
    assert _code(excinfo) == "ModelError"
    assert "MemoryError" in excinfo.value.response["OriginalMessage"]
    small = runtime.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"16")
    assert small["Body"].read() == str(16 * 1024 * 1024).encode()


def test_running_time_is_metered_for_cost(server, runtime, failing_endpoint: str) -> None:
    import re
    import time

    time.sleep(1.5)  # at least one metering tick after the endpoint came up
    with urllib.request.urlopen(f"{server.url}/metrics") as response:
        text = response.read().decode()
    labels = f'endpoint="{failing_endpoint}",instance_type="ml.m5.large",variant="AllTraffic"'
    seconds = re.search(rf"modelhost_instance_seconds_total\{{{labels}\}} ([0-9.e+-]+)", text)
    cost = re.search(rf"modelhost_instance_cost_usd_total\{{{labels}\}} ([0-9.e+-]+)", text)
    assert seconds and cost, text[-2000:]
    assert float(seconds.group(1)) > 0
    assert float(cost.group(1)) == pytest.approx(float(seconds.group(1)) * 0.115 / 3600)
