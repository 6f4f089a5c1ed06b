"""Fuzzing the HTTP surface with raw requests that bypass botocore's client-side checks.

The rule under test: every path validates its input, answers in SageMaker's error format,
and never answers 5xx for a user's mistake (ModelError 424 and ServiceUnavailable 503 are
the only legitimate failures of the runtime), never hangs, never takes the server down.

The first tests are regressions: concrete requests found by fuzzing. The sweeps at the end
generate malformed input from botocore's own shapes for every implemented operation (fixed
seed, a fixed number of requests), throw odd requests at the runtime and the other routes,
and finally check that the server still serves. The module fuzzes a server of its own and
fails at teardown if that server logged a traceback or an ERROR.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import socket
import string
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import cbor2
import pytest
from botocore.parsers import create_parser

from modelhost.api import SERVICE_DATA_PATH
from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import put_iris_model
from tests.support.server import ServerProcess, running_server

OPERATIONS = (
    "CreateModel",
    "DescribeModel",
    "ListModels",
    "DeleteModel",
    "CreateEndpointConfig",
    "DescribeEndpointConfig",
    "ListEndpointConfigs",
    "DeleteEndpointConfig",
    "CreateEndpoint",
    "DescribeEndpoint",
    "ListEndpoints",
    "UpdateEndpoint",
    "DeleteEndpoint",
    "UpdateEndpointWeightsAndCapacities",
    "AddTags",
    "ListTags",
    "DeleteTags",
)
ARN = "arn:aws:sagemaker:us-east-1:000000000000"
# Error bodies must say what is wrong, not echo megabytes of the request back.
MAX_ERROR_BODY = 64 * 1024

_SERVICE = botocore.session.get_session().get_service_model("sagemaker")
CBOR = "smithy-rpc-v2-cbor"


def _modelhost_session() -> botocore.session.Session:
    """A botocore session that knows modelhost's own service model, as the README shows."""
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.append(str(SERVICE_DATA_PATH))
    return session


_MODELHOST = _modelhost_session().get_service_model("modelhost")
_CLOUDWATCH = botocore.session.get_session().get_service_model("cloudwatch")


# --- helpers --------------------------------------------------------------------------------


def _post(
    server, target: str, body: bytes, timeout: float = 15
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/",
            body=body,
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _post_cbor(
    server, target: str, body: bytes, timeout: float = 15, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One RPC v2 CBOR call: `Service.Operation` becomes /service/Service/operation/Operation."""
    service, _, operation = target.partition(".")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            f"/service/{service}/operation/{operation}",
            body=body,
            headers={
                "smithy-protocol": "rpc-v2-cbor",
                "Accept": "application/cbor",
                "Content-Type": "application/cbor",
                **(headers or {}),
            },
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _call(server, operation: str, params: Any) -> tuple[int, bytes]:
    status, _, body = _post(server, f"SageMaker.{operation}", json.dumps(params).encode())
    return status, body


def _assert_client_error(status: int, body: bytes, code: str | None = None) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body[:500])
    error = json.loads(body)
    assert isinstance(error, dict) and error.get("__type"), body[:500]
    if code is not None:
        assert error["__type"] == code, body[:500]
    return error


def _raw(server, request: bytes, timeout: float = 5) -> tuple[int | None, bytes]:
    """Send bytes as they are; the status (None when the server never answered) and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if lengths and len(rest) >= int(lengths[0]):
                    break
    if not data.startswith(b"HTTP/1."):
        return None, data
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def _status(server, name: str) -> str:
    status, body = _call(server, "DescribeEndpoint", {"EndpointName": name})
    return json.loads(body).get("EndpointStatus", f"<{status}>")


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's own server, so its log holds only what the fuzzing did to it, whichever
    worker runs the module (a shared server's log mixes in other modules' tests). Its
    teardown is the module's last check: the server logged no traceback and no ERROR."""
    with running_server(
        tmp_path_factory.mktemp("fuzzing") / "data", env={"MODELHOST_MODEL_TIMEOUT": "5"}
    ) as process:
        yield process
        assert process.process is not None and process.process.poll() is None, "server died"
        _assert_log_is_clean(process.log())


def _assert_log_is_clean(text: str) -> None:
    failures = sorted(
        {
            re.sub(r"^[0-9-]+ [0-9:,]+ ", "", line.strip())[:160]
            for line in text.splitlines()
            if " ERROR " in line or re.match(r"[A-Za-z_.]*(Error|Exception): ", line)
        }
    )
    assert "Traceback" not in text, "server log has tracebacks:\n" + "\n".join(failures[:40])
    assert not failures, "\n".join(failures[:40])


@pytest.fixture(scope="module")
def sagemaker(server: ServerProcess):
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def runtime(server: ServerProcess):
    return server.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def iris_model_url(server: ServerProcess) -> str:
    return put_iris_model(server.data_dir)


@pytest.fixture(scope="module")
def live(server, sagemaker, iris_model_url: str) -> Iterator[str]:
    """One healthy endpoint (its model and config share its name), kept for the module."""
    name = deploy(sagemaker, iris_model_url)
    yield name
    with contextlib.suppress(Exception):
        sagemaker.delete_endpoint(EndpointName=name)


# --- regressions: 500s on bad input ---------------------------------------------------------

# botocore's validator raises RuntimeError/OverflowError (not ValueError) for timestamps it
# cannot place in a time zone; the server turns them into InternalFailure 500.
OUT_OF_RANGE_TIMESTAMPS = [
    ("ListModels", {"CreationTimeBefore": 1e20}),
    ("ListModels", {"CreationTimeBefore": "1e20"}),
    ("ListEndpointConfigs", {"CreationTimeAfter": -1e20}),
    ("ListEndpoints", {"LastModifiedTimeBefore": "inf"}),
    ("ListEndpoints", {"LastModifiedTimeAfter": 2**63}),
    ("ListModels", {"CreationTimeAfter": "0001-01-01T00:00:00+14:00"}),
    ("ListEndpoints", {"CreationTimeBefore": "9999-12-31T23:59:59-14:00"}),
]


@pytest.mark.parametrize(
    ("operation", "params"),
    OUT_OF_RANGE_TIMESTAMPS,
    ids=[f"{op}-{next(iter(p.values()))}" for op, p in OUT_OF_RANGE_TIMESTAMPS],
)
def test_out_of_range_timestamp_is_a_validation_error(
    server, operation: str, params: dict[str, Any]
) -> None:
    _assert_client_error(*_call(server, operation, params), "ValidationException")


@pytest.mark.parametrize("token", ["\u00b2", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_list_tags_odd_next_token_is_a_validation_error(server, live: str, token: str) -> None:
    """`str.isdigit()` accepts '²' and 5000-digit strings; `int()` then raises -> 500."""
    status, body = _call(
        server, "ListTags", {"ResourceArn": f"{ARN}:model/{live}", "NextToken": token}
    )
    _assert_client_error(status, body, "ValidationException")


@pytest.mark.parametrize("where", ["ModelName", "Environment"])
def test_deeply_nested_value_is_a_validation_error(server, where: str) -> None:
    """botocore's report formats the offending value with str(); 1000 nested lists raise
    RecursionError there -> 500."""
    nested = "[" * 1000 + "]" * 1000
    if where == "ModelName":
        body = '{"ModelName": ' + nested + "}"
        operation = "DescribeModel"
    else:
        body = (
            '{"ModelName": "fuzz-nested", "PrimaryContainer": {"Image": "x", '
            '"Environment": {"A": ' + nested + "}}}"
        )
        operation = "CreateModel"
    status, _, answer = _post(server, f"SageMaker.{operation}", body.encode())
    _assert_client_error(status, answer, "ValidationException")


# --- regressions: wrong JSON types accepted ------------------------------------------------


def test_boolean_is_not_an_integer(server, live: str) -> None:
    """JSON true passes botocore's integer/float/timestamp checks (bool is an int in Python),
    so a config is stored and described with `"InitialInstanceCount": true`."""
    name = unique("fuzz-bool")
    status, body = _call(
        server,
        "CreateEndpointConfig",
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "v",
                    "ModelName": live,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": True,
                }
            ],
        },
    )
    if status == 200:
        _call(server, "DeleteEndpointConfig", {"EndpointConfigName": name})
    _assert_client_error(status, body, "ValidationException")


@pytest.mark.parametrize(
    "params",
    [{"MaxResults": True}, {"CreationTimeBefore": True}],
    ids=["MaxResults", "CreationTimeBefore"],
)
def test_boolean_is_not_a_number_in_lists(server, params: dict[str, Any]) -> None:
    _assert_client_error(*_call(server, "ListModels", params), "ValidationException")


# --- regressions: answers that echo the request without bound ---------------------------


@pytest.mark.parametrize("case", ["list-for-string", "many-unknown-keys", "huge-enum-value"])
def test_error_body_does_not_echo_huge_input(server, case: str) -> None:
    """A 2 MB request got a 50 MB error body (botocore's report lists every value and every
    unknown key, and the message is sent twice); 12 MB of keys gave 265 MB and held the
    event loop for 4 s, stalling every other request including invocations."""
    operation, params = {
        "list-for-string": ("DescribeModel", {"ModelName": ["a"] * 200_000}),
        "many-unknown-keys": ("ListModels", {f"k{i}": 1 for i in range(100_000)}),
        "huge-enum-value": ("ListModels", {"SortBy": "x" * 1_000_000}),
    }[case]
    status, body = _call(server, operation, params)
    _assert_client_error(status, body, "ValidationException")
    assert len(body) <= MAX_ERROR_BODY, f"{len(body)} bytes of error for {case}"


def test_twenty_megabyte_control_body_is_refused_quickly(server) -> None:
    body = b'{"ModelName": "' + b"a" * (20 * 1024 * 1024) + b'"}'
    started = time.monotonic()
    status, _, answer = _post(server, "SageMaker.DescribeModel", body)
    assert 400 <= status < 500, (status, answer[:300])
    assert len(answer) <= MAX_ERROR_BODY
    assert time.monotonic() - started < 5


# --- regressions: resources in odd states ---------------------------------------------------


def test_names_differing_only_in_case_are_one_resource(server) -> None:
    """The ARN lower-cases the name, so "Fuzz-X" and "fuzz-x" got the same ARN and shared
    tags (deleting one deleted the other's tags). SageMaker names are unique regardless of
    case."""
    name = unique("Fuzz-Case")
    container = {"Image": "modelhost/sklearn", "ModelDataUrl": "s3://models/iris/model.tar.gz"}
    first = _call(server, "CreateModel", {"ModelName": name, "PrimaryContainer": container})
    second = _call(
        server, "CreateModel", {"ModelName": name.lower(), "PrimaryContainer": container}
    )
    for model in (name, name.lower()):
        _call(server, "DeleteModel", {"ModelName": model})
    assert first[0] == 200, first
    _assert_client_error(*second, "ValidationException")


def test_environment_with_nul_byte_does_not_wedge_the_endpoint(
    server, sagemaker, iris_model_url: str
) -> None:
    """Popen raises ValueError("embedded null byte"), which the deploy does not treat as a
    failed deployment: the endpoint stayed Creating forever while the controller retried in
    a tight loop (100% CPU, ~10k tracebacks a second in the log)."""
    model = unique("fuzz-nul")
    status, body = _call(
        server,
        "CreateModel",
        {
            "ModelName": model,
            "PrimaryContainer": {
                "Image": "modelhost/sklearn",
                "ModelDataUrl": iris_model_url,
                "Environment": {"BAD": "a\u0000b"},
            },
        },
    )
    if 400 <= status < 500:
        return  # refusing it up front is fine too
    assert status == 200, body
    assert (
        _call(
            server,
            "CreateEndpointConfig",
            {
                "EndpointConfigName": model,
                "ProductionVariants": [
                    {
                        "VariantName": "v",
                        "ModelName": model,
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                    }
                ],
            },
        )[0]
        == 200
    )
    assert (
        _call(server, "CreateEndpoint", {"EndpointName": model, "EndpointConfigName": model})[0]
        == 200
    )
    try:
        # short wait: while the bug is there every second adds megabytes to the log
        final = wait_for_status(sagemaker, model, {"Failed", "InService"}, timeout_s=5)
    finally:
        _call(server, "DeleteEndpoint", {"EndpointName": model})
    assert final["EndpointStatus"] == "Failed"
    assert final.get("FailureReason")


def test_model_data_that_blocks_does_not_leave_the_endpoint_creating(server, sagemaker) -> None:
    """A FIFO inside an uncompressed model prefix: copying it blocks in a worker thread with
    no time limit, and the endpoint stays Creating for as long as nobody writes to it."""
    name = unique("fuzz-fifo")
    folder = server.data_dir / "objects" / "models" / name  # s3://models/<name>/
    folder.mkdir(parents=True)
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    _call(
        server,
        "CreateModel",
        {
            "ModelName": name,
            "PrimaryContainer": {
                "Image": "modelhost/sklearn",
                "ModelDataUrl": f"s3://models/{name}/",
            },
        },
    )
    _call(
        server,
        "CreateEndpointConfig",
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "v",
                    "ModelName": name,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        },
    )
    assert (
        _call(server, "CreateEndpoint", {"EndpointName": name, "EndpointConfigName": name})[0]
        == 200
    )
    try:
        final = wait_for_status(sagemaker, name, {"Failed", "InService"}, timeout_s=10)
        assert final["EndpointStatus"] == "Failed"
    finally:
        _call(server, "DeleteEndpoint", {"EndpointName": name})
        # unblock a reader that may still be stuck on the pipe
        with contextlib.suppress(OSError):
            descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(descriptor)


def test_unknown_target_variants_do_not_grow_the_metrics(server, live: str) -> None:
    """The 4xx counter is labelled with the client's TargetVariant header as sent: every
    random value is a new time series, kept forever (memory and /metrics grow unbounded)."""
    marker = uuid.uuid4().hex
    for index in range(3):
        status, _ = _raw(
            server,
            (
                f"POST /endpoints/{live}/invocations HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: text/csv\r\nX-Amzn-SageMaker-Target-Variant: {marker}-{index}\r\n"
                "Content-Length: 15\r\nConnection: close\r\n\r\n5.1,3.5,1.4,0.2"
            ).encode(),
        )
        assert status == 400
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert marker not in text


# --- regressions: modelhost's own operations, and the CBOR route ---------------------------


def _job_template(model: str, prefix: str = "s3://fuzz/in/") -> dict[str, Any]:
    return {
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": prefix}}
        },
        "TransformOutput": {"S3OutputPath": "s3://fuzz/out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def _schedule(name: str, model: str, prefix: str = "s3://fuzz/in/{date:%Y}/") -> dict[str, Any]:
    """Due once a year, at 02:00 on 1 January: it never fires while the module runs."""
    return {
        "ScheduleName": name,
        "ScheduleExpression": "0 2 1 1 *",
        "InputPrefixTemplate": prefix,
        "TransformJobTemplate": _job_template(model),
    }


def _parse_cbor(
    target: str, status: int, headers: dict[str, str], body: bytes, model=_MODELHOST
) -> dict[str, Any]:
    operation = model.operation_model(target.partition(".")[2])
    return create_parser(CBOR).parse(
        {"status_code": status, "headers": headers, "body": body}, operation.output_shape
    )


@pytest.mark.parametrize("target", ["Modelhost.CreateSchedule", "SageMaker.CreateModel"])
def test_operations_of_json_services_are_refused_over_cbor_before_they_run(
    server, live: str, target: str
) -> None:
    """CBOR CreateSchedule created the schedule, then answered a plain-text 500 (the
    timestamp tagging looked the operation up in botocore's models, which had none). Only
    services whose model lists RPC v2 CBOR (CloudWatch) are served on that route."""
    name = unique("fuzz-cbor")
    params = (
        _schedule(name, live)
        if target.startswith("Modelhost")
        else {
            "ModelName": name,
            "PrimaryContainer": {
                "Image": "modelhost/sklearn",
                "ModelDataUrl": "s3://fuzz/model.tar.gz",
            },
        }
    )
    status, headers, body = _post_cbor(server, target, cbor2.dumps(params))
    if target.startswith("Modelhost"):
        ran = (
            _post(server, "Modelhost.DeleteSchedule", json.dumps({"ScheduleName": name}).encode())[
                0
            ]
            == 200
        )
    else:
        ran = _call(server, "DeleteModel", {"ModelName": name})[0] == 200
    assert status == 400, (status, headers, body[:300])
    assert headers["content-type"] == "application/cbor", body[:300]
    assert cbor2.loads(body)["__type"] == "UnknownOperationException"
    assert not ran, f"{target} ran before it was refused"


def test_cloudwatch_over_cbor_still_served(server) -> None:
    """The route's own service: timestamps come back as tag 1, which botocore reads."""
    name = unique("fuzz-cw")
    alarm = {
        "AlarmName": name,
        "MetricName": "Invocations",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    target = "GraniteServiceVersion20100801"
    assert _post_cbor(server, f"{target}.PutMetricAlarm", cbor2.dumps(alarm))[0] == 200
    try:
        described = _parse_cbor(
            f"{target}.DescribeAlarms",
            *_post_cbor(server, f"{target}.DescribeAlarms", cbor2.dumps({"AlarmNames": [name]})),
            model=_CLOUDWATCH,
        )
        assert described["MetricAlarms"][0]["AlarmConfigurationUpdatedTimestamp"].year >= 2024
    finally:
        _post_cbor(server, f"{target}.DeleteAlarms", cbor2.dumps({"AlarmNames": [name]}))


_CW = "GraniteServiceVersion20100801"
CBOR_ERRORS = [
    ("Modelhost.ListSchedules", cbor2.dumps({"MaxResults": []}), "UnknownOperationException"),
    ("Modelhost.Nope", cbor2.dumps({}), "UnknownOperationException"),
    ("SageMaker.ListModels", cbor2.dumps({}), "UnknownOperationException"),
    ("Nope.Nope", cbor2.dumps({}), "UnknownOperationException"),
    (f"{_CW}.Nope", cbor2.dumps({}), "UnknownOperationException"),
    (f"{_CW}.DescribeAlarms", b"\xff\x00junk", "ValidationError"),
    (f"{_CW}.DescribeAlarms", cbor2.dumps([1, 2]), "ValidationError"),
    (f"{_CW}.DescribeAlarms", cbor2.dumps({"MaxRecords": 2**70}), "ValidationError"),
    (f"{_CW}.DescribeAlarms", cbor2.dumps({1: "not a string key"}), "ValidationError"),
    (f"{_CW}.DescribeAlarms", cbor2.dumps({"AlarmNamePrefix": cbor2.undefined}), "ValidationError"),
    (
        f"{_CW}.DescribeAlarms",
        cbor2.dumps({"AlarmNamePrefix": cbor2.CBORTag(999, "x")}),
        "ValidationError",
    ),
    (f"{_CW}.DescribeAlarms", b"\x81" * 100_000 + b"\x00", "ValidationError"),
    (
        f"{_CW}.PutMetricAlarm",
        cbor2.dumps(
            {
                "AlarmName": "fuzz-big",
                "MetricName": "m",
                "Namespace": "AWS/SageMaker",
                "Statistic": "Average",
                "Period": 60,
                "EvaluationPeriods": 2**64 + 1,
                "Threshold": 1.0,
                "ComparisonOperator": "GreaterThanThreshold",
            }
        ),
        "ValidationError",
    ),
    (
        f"{_CW}.PutMetricAlarm",
        cbor2.dumps(
            {
                "AlarmName": "fuzz-nan",
                "MetricName": "m",
                "Namespace": "AWS/SageMaker",
                "Statistic": "Average",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": float("nan"),
                "ComparisonOperator": "GreaterThanThreshold",
            }
        ),
        "ValidationError",
    ),
]


@pytest.mark.parametrize(
    ("target", "body", "code"),
    CBOR_ERRORS,
    ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(CBOR_ERRORS)],
)
def test_cbor_errors_are_cbor(server, target: str, body: bytes, code: str) -> None:
    """Every error on the CBOR route is a CBOR map botocore reads, never a plain-text 500;
    values a JSON body cannot carry (big integers, NaN, non-string keys, undefined, unknown
    tags) are refused as the JSON route refuses them, before anything is stored."""
    status, headers, answer = _post_cbor(server, target, body)
    assert status == 400, (status, headers, answer[:300])
    assert headers["content-type"] == "application/cbor", answer[:300]
    operation = target.partition(".")[2]
    output = (
        _CLOUDWATCH.operation_model(operation).output_shape
        if target.startswith(_CW) and operation in _CLOUDWATCH.operation_names
        else None
    )
    parsed = create_parser(CBOR).parse(
        {"status_code": status, "headers": headers, "body": answer}, output
    )
    assert parsed["Error"]["Code"] == code, parsed


LIST_SCHEDULES_CONFUSION = [
    {"MaxResults": []},
    {"NextToken": True},
    {"SortBy": {}},
    {"NameContains": 5},
    {"SortOrder": 1},
    {"MaxResults": 0},
    {"CreationTimeBefore": "yesterday"},
    {"Unexpected": 1},
]


@pytest.mark.parametrize(
    "params", LIST_SCHEDULES_CONFUSION, ids=[json.dumps(p) for p in LIST_SCHEDULES_CONFUSION]
)
def test_list_schedules_checks_types(server, live: str, params: dict[str, Any]) -> None:
    """ListSchedules used what it was sent unchecked: a list for MaxResults, true for
    NextToken or a map for SortBy was InternalFailure 500, and unknown members were ignored.
    (One schedule exists, so filters run over a record.)"""
    name = unique("fuzz-types")
    created = _post(server, "Modelhost.CreateSchedule", json.dumps(_schedule(name, live)).encode())
    try:
        assert created[0] == 200, created
        status, _, body = _post(server, "Modelhost.ListSchedules", json.dumps(params).encode())
        _assert_client_error(status, body, "ValidationException")
    finally:
        _post(server, "Modelhost.DeleteSchedule", json.dumps({"ScheduleName": name}).encode())


def test_boto3_calls_modelhost_operations_with_the_shipped_model(server, live: str) -> None:
    """The service model ships as a botocore data folder, so boto3 makes a client for
    modelhost's own operations, validates client-side and parses the answers."""
    client = boto3.Session(botocore_session=_modelhost_session()).client(
        "modelhost",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = unique("fuzz-boto3")
    arn = client.create_schedule(**_schedule(name, live))["ScheduleArn"]
    try:
        described = client.describe_schedule(ScheduleName=name)
        assert described["ScheduleArn"] == arn
        assert described["State"] == "Enabled"
        assert described["NextRunTime"] > described["CreationTime"]
        pages = client.get_paginator("list_schedules").paginate(
            NameContains=name, PaginationConfig={"PageSize": 1}
        )
        assert [s["ScheduleName"] for page in pages for s in page["Schedules"]] == [name]
        with pytest.raises(client.exceptions.ValidationException):
            client.create_schedule(**_schedule(name, live))
    finally:
        client.delete_schedule(ScheduleName=name)
    with pytest.raises(client.exceptions.ValidationException):
        client.describe_schedule(ScheduleName=name)


def test_long_path_components_fail_the_job_not_the_request(server, sagemaker, live: str) -> None:
    """Name-like URI parts over 255 bytes (a file name's limit, not S3's) map to local
    paths the OS refuses with ENAMETOOLONG: the request is taken, as S3 would take it, and
    the job fails with a reason instead of a 500 or a traceback."""
    long = "a" * 300
    name = unique("fuzz-long")
    schedule = _schedule(name, live, f"s3://fuzz/{long}/{{date:%Y}}/")
    status, _, body = _post(server, "Modelhost.CreateSchedule", json.dumps(schedule).encode())
    assert status == 200, body[:300]
    _post(server, "Modelhost.DeleteSchedule", json.dumps({"ScheduleName": name}).encode())
    status, body = _call(
        server,
        "CreateTransformJob",
        {"TransformJobName": name, **_job_template(live, f"s3://fuzz/{long}/in/")},
    )
    assert status == 200, body[:300]
    deadline = time.monotonic() + 60
    while (job := sagemaker.describe_transform_job(TransformJobName=name))[
        "TransformJobStatus"
    ] == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job["TransformJobStatus"] == "Failed"
    assert job.get("FailureReason")


# --- the header cap -----------------------------------------------------------------------


def _routes(live: str) -> dict[str, tuple[str, str, str]]:
    """route -> (request line and headers without the cap-breaking one, body, error code)"""
    return {
        "control": (
            "POST / HTTP/1.1\r\nX-Amz-Target: SageMaker.ListModels\r\n"
            "Content-Type: application/x-amz-json-1.1\r\n",
            "{}",
            "ValidationException",
        ),
        "runtime": (
            f"POST /endpoints/{live}/invocations HTTP/1.1\r\nContent-Type: text/csv\r\n",
            "5.1,3.5,1.4,0.2",
            "ValidationError",
        ),
        "cbor": (
            "POST /service/GraniteServiceVersion20100801/operation/DescribeAlarms "
            "HTTP/1.1\r\n"
            "smithy-protocol: rpc-v2-cbor\r\nContent-Type: application/cbor\r\n",
            "\xa0",
            "ValidationException",
        ),
        "ping": ("GET /ping HTTP/1.1\r\n", "", "ValidationException"),
    }


def _request(head: str, extra: str, body: str) -> bytes:
    return (
        f"{head}Host: x\r\n{extra}Content-Length: {len(body.encode('latin-1'))}\r\n"
        "Connection: close\r\n\r\n" + body
    ).encode("latin-1")


OVERSIZE = {
    "one 20 KB header": "X-Fuzz: " + "a" * 20_000 + "\r\n",
    "one 8 MB header": "X-Fuzz: " + "a" * (8 * 1024 * 1024) + "\r\n",
    "2000 small headers": "".join(f"X-Fuzz-{i}: abcdef\r\n" for i in range(2000)),
}


@pytest.mark.parametrize("route", ["control", "runtime", "cbor", "ping"])
@pytest.mark.parametrize("size", list(OVERSIZE))
def test_oversize_headers_are_refused_on_every_route(
    server, live: str, route: str, size: str
) -> None:
    """Headers had no limit (8 MB of them were read and served); over 16 KiB in total is
    a 431 in the route's own error format."""
    head, body, code = _routes(live)[route]
    status, answer = _raw(server, _request(head, OVERSIZE[size], body), timeout=30)
    assert status == 431, (status, answer[:300])
    error = cbor2.loads(answer) if route == "cbor" else json.loads(answer)
    assert error["__type"] == code, error
    assert "16 KiB" in error["message"]


@pytest.mark.parametrize("route", ["control", "runtime", "cbor", "ping"])
def test_headers_under_the_cap_are_served(server, live: str, route: str) -> None:
    head, body, _ = _routes(live)[route]
    status, answer = _raw(server, _request(head, "X-Fuzz: " + "a" * 15_000 + "\r\n", body))
    assert status == 200, (status, answer[:300])


# --- generated sweep over every operation -------------------------------------------------

_JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    1e308,
    "",
    " ",
    "x" * 300,
    "\u00fc\u202e\U0001f4a5\x00",
    [],
    [None],
    {},
    {"a": 1},
    [[[]]],
    {"a": {"b": {"c": [1, {"d": None}]}}},
    "1e20",
    "yesterday",
    "2020-01-01T00:00:00Z",
    "\u00b2",
    "NaN",
    "../../etc/passwd",
    "s3://../../x",
    "%00",
    # path components over 255 bytes: S3 takes them, a local file name cannot hold them
    "s3://fuzz/" + "a" * 300 + "/",
    "/" + "a" * 300 + "/model.tar.gz",
    "a" * 256,
    "s3://fuzz/" + "a" * 300 + "/{date:%Y}/",
    "* * * * *",
    "0 2 1 1 *",
]
_JUNK_BODIES = [
    b"",
    b" ",
    b"null",
    b"[]",
    b'"x"',
    b"1",
    b"true",
    b"{",
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    b'{"a": NaN}',
    b'{"a": 1e400}',
    b"{}{}",
    b'{"a":}',
    b'{"\\ud800": 1}',
    b"[" * 2000,
]
_JUNK_TARGETS = [
    "",
    ".",
    "SageMaker",
    "SageMaker.",
    "SageMaker.Nope",
    "sagemaker.ListModels",
    "SageMaker.CreateTrainingJob",
    "AnyScaleFrontendService.DescribeScalableTargets",
    "SageMaker.ListModels.Extra",
    "x" * 5000,
]


class _Generator:
    """Values per botocore shape: plausible ones, boundary ones and plain wrong ones."""

    def __init__(self, rng: random.Random, names: list[str], arns: list[str]) -> None:
        self.rng = rng
        self.names = names
        self.arns = arns

    def string(self, shape) -> str:
        rng = self.rng
        if shape.enum and rng.random() < 0.6:
            return str(rng.choice(shape.enum))
        if shape.name.endswith("Name") and rng.random() < 0.5:
            return rng.choice(self.names)
        if "Arn" in shape.name and rng.random() < 0.6:
            return rng.choice(self.arns)
        if shape.name == "ProductionVariantInstanceType" and rng.random() < 0.5:
            return "ml.m5.large"
        roll = rng.random()
        if roll < 0.4:
            alphabet = string.ascii_letters + string.digits + "-"
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        if roll < 0.6:
            return "".join(
                chr(rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                for _ in range(rng.randint(0, 10))
            )
        if roll < 0.7:
            return "a" * rng.choice([0, 63, 64, 257, 1025, 2049, 100_000])
        return rng.choice([j for j in _JUNK if isinstance(j, str)])

    def value(self, shape, depth: int = 0) -> Any:
        rng = self.rng
        kind = shape.type_name
        if kind == "structure" and shape.metadata.get("document"):
            return rng.choice(
                [
                    _job_template(self.names[0]),
                    {},
                    {**_job_template(self.names[0]), "TransformJobName": "x"},
                    rng.choice(_JUNK),
                ]
            )
        if kind == "structure":
            return {
                name: self.value(member, depth + 1)
                for name, member in shape.members.items()
                if name in shape.required_members or rng.random() < (0.4 if depth < 3 else 0.1)
            }
        if kind == "list":
            return [self.value(shape.member, depth + 1) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        if kind == "map":
            return {
                self.string(shape.key): self.value(shape.value, depth + 1)
                for _ in range(rng.choice([0, 1, 2]))
            }
        if kind == "string":
            return self.string(shape)
        if kind in ("integer", "long"):
            return rng.choice(
                [0, 1, 2, -1, 5, 10, 50, 100, 101, 1000, 2**31, 2**62, rng.randint(-(10**6), 10**6)]
            )
        if kind in ("float", "double"):
            return rng.choice([0.0, 0.5, 1.0, -1.0, 1e30, 1e-30, rng.random()])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "timestamp":
            return rng.choice(
                [
                    0,
                    1,
                    1.7e9,
                    -1,
                    1e12,
                    1e20,
                    -1e20,
                    "2024-01-01T00:00:00Z",
                    "2024-01-01",
                    "yesterday",
                    "1e20",
                    "0",
                    "99999999999",
                ]
            )
        return "aGVsbG8="  # blob

    def mutate(self, value: Any) -> Any:
        """Replace one randomly chosen node of `value` by junk."""
        paths: list[tuple[Any, ...]] = []

        def walk(node: Any, path: tuple[Any, ...]) -> None:
            if path:
                paths.append(path)
            children = (
                node.items()
                if isinstance(node, dict)
                else (enumerate(node) if isinstance(node, list) else ())
            )
            for key, child in children:
                walk(child, (*path, key))

        walk(value, ())
        if not paths:
            return {"Unexpected": self.rng.choice(_JUNK)}
        path = self.rng.choice(paths)
        node = value
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = self.rng.choice(_JUNK)
        return value


def _protect(operation: str, params: Any, live: str) -> Any:
    """Keep the sweep from deleting or redeploying the live endpoint and its model and
    config, and from starting endpoints (each would be instances)."""
    if not isinstance(params, dict):
        return params
    for key in ("ModelName", "EndpointConfigName", "EndpointName"):
        value = params.get(key)
        destructive = operation.startswith(("Delete", "Update")) and operation != "DeleteTags"
        if isinstance(value, str) and (
            (destructive and value.lower() == live.lower())
            or (operation == "CreateEndpoint" and key == "EndpointConfigName")
        ):
            params[key] = f"fuzz-missing-{value[:20]}"
    return params


def _check_answer(operation: str, status: int, headers: dict[str, str], body: bytes) -> str | None:
    """What is wrong with one SageMaker answer over JSON 1.1, or None."""
    output = _SERVICE.operation_model(operation).output_shape if operation in OPERATIONS else None
    return _check(output, "json", status, headers, body)


def _check(output, protocol: str, status: int, headers: dict[str, str], body: bytes) -> str | None:
    """What is wrong with one control-plane answer in `protocol` ("json" or
    "smithy-rpc-v2-cbor") for an operation answering `output`, or None."""
    if status >= 500:
        return f"{status} {body[:200]!r}"
    cbor = protocol == "smithy-rpc-v2-cbor"
    if cbor and headers.get("content-type") != "application/cbor":
        return f"{status} content-type {headers.get('content-type')!r}: {body[:200]!r}"
    try:
        document = (cbor2.loads(body) if cbor else json.loads(body)) if body else {}
    except ValueError:
        return f"{status} body is not {'CBOR' if cbor else 'JSON'}: {body[:200]!r}"
    if status >= 400 and not (isinstance(document, dict) and document.get("__type")):
        return f"{status} error without __type: {body[:200]!r}"
    try:
        parsed = create_parser(protocol).parse(
            {"status_code": status, "headers": headers, "body": body}, output
        )
    except Exception as exc:
        return f"{status} botocore cannot parse it: {exc!r}"
    if status >= 400 and parsed.get("Error", {}).get("Code") != document["__type"]:
        return f"{status} botocore reads error code {parsed.get('Error')!r}"
    return None


def test_generated_sweep_never_5xx(server, live: str) -> None:
    rng = random.Random(20240611)
    names = [live, live.upper(), "fuzz-missing", "a" * 63, "-bad-", "AllTraffic"]
    arns = [
        f"{ARN}:model/{live}",
        f"{ARN}:endpoint/{live}",
        f"{ARN}:endpoint-config/{live}",
        f"arn:aws:sagemaker:eu-west-1:000000000000:model/{live}",
        f"{ARN}:training-job/{live}",
        f"{ARN}:model/",
        f"{ARN}:model/{live.upper()}",
        "arn:aws:s3:::bucket",
        "not-an-arn",
        f"arn:aws:sagemaker:::model/{live}",
    ]
    generator = _Generator(rng, names, arns)
    problems: dict[tuple[str, str], str] = {}
    created: list[tuple[str, dict[str, str]]] = []
    requests: list[tuple[str, str, bytes]] = []
    for operation in OPERATIONS:
        shape = _SERVICE.operation_model(operation).input_shape
        for index in range(150):
            params = generator.value(shape)
            if index % 2:
                params = generator.mutate(params)
            params = _protect(operation, params, live)
            requests.append((operation, f"SageMaker.{operation}", json.dumps(params).encode()))
        requests.extend((operation, f"SageMaker.{operation}", body) for body in _JUNK_BODIES)
    requests.extend(("?", target, b"{}") for target in _JUNK_TARGETS)

    started = time.monotonic()
    for operation, target, body in requests:
        try:
            status, headers, answer = _post(server, target, body, timeout=10)
        except (OSError, http.client.HTTPException) as exc:
            problems.setdefault(
                (operation, type(exc).__name__), f"no answer ({exc!r}) to {body[:300]!r}"
            )
            continue
        problem = _check_answer(operation, status, headers, answer)
        if problem is not None:
            kind = problem.split(":")[0][:60]
            problems.setdefault((operation, kind), f"{problem}\n    request: {body[:300]!r}")
        if status == 200 and operation in ("CreateModel", "CreateEndpointConfig"):
            key = "ModelName" if operation == "CreateModel" else "EndpointConfigName"
            created.append((operation.replace("Create", "Delete"), {key: json.loads(body)[key]}))
    elapsed = time.monotonic() - started
    for operation, params in created:
        _call(server, operation, params)
    assert not problems, f"{len(problems)} distinct problems:\n" + "\n".join(
        f"{op}: {text}" for (op, _), text in sorted(problems.items())
    )
    assert elapsed < 20, f"sweep of {len(requests)} requests took {elapsed:.1f} s"


# Fixed and seeded, so CI sends the same requests every run: per Modelhost operation over
# JSON, and per CloudWatch operation over CBOR.
MODELHOST_REQUESTS_PER_OPERATION = 200
CBOR_REQUESTS_PER_OPERATION = 100
_CBOR_JUNK_BODIES = [
    b"",
    b"\xa0",
    b"\x80",
    b"\xff",
    b"\xbf",
    b"\x9f" * 500,
    b"\xf7",
    b"\xc1\x1b\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"\xfb\x7f\xf8" + b"\x00" * 6,
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xa1\x01\x02",
    b"\xd9\xd9\xf7\xa0",
]


def test_generated_sweep_of_modelhost_and_cbor_never_5xx(server, live: str) -> None:
    """modelhost's own operations from their service model over JSON, CloudWatch's and
    refused services' over CBOR, with junk bodies: no 5xx, every answer parsed by botocore."""
    rng = random.Random(20250107)
    generator = _Generator(
        rng,
        [live, "fuzz-missing", "a" * 48, "-bad-", "a" * 300],
        [f"{ARN}:model/{live}", "not-an-arn"],
    )
    requests: list[tuple[str, Any, str, bytes]] = []  # protocol, output shape, target, body
    for operation in _MODELHOST.operation_names:
        model = _MODELHOST.operation_model(operation)
        for index in range(MODELHOST_REQUESTS_PER_OPERATION):
            params = generator.value(model.input_shape)
            if index % 2:
                params = generator.mutate(params)
            requests.append(
                ("json", model.output_shape, f"Modelhost.{operation}", json.dumps(params).encode())
            )
        requests.extend(
            ("json", model.output_shape, f"Modelhost.{operation}", body) for body in _JUNK_BODIES
        )
        requests.append((CBOR, None, f"Modelhost.{operation}", cbor2.dumps({})))
    for operation in (
        "PutMetricAlarm",
        "DescribeAlarms",
        "DescribeAlarmsForMetric",
        "DeleteAlarms",
        "GetMetricData",
        "GetMetricStatistics",
        "ListMetrics",
        "PutMetricData",
    ):
        model = _CLOUDWATCH.operation_model(operation)
        for index in range(CBOR_REQUESTS_PER_OPERATION):
            params = generator.value(model.input_shape)
            if index % 2:
                params = generator.mutate(params)
            requests.append((CBOR, model.output_shape, f"{_CW}.{operation}", cbor2.dumps(params)))
        requests.extend(
            (CBOR, model.output_shape, f"{_CW}.{operation}", body) for body in _CBOR_JUNK_BODIES
        )
    for operation in OPERATIONS:
        requests.append((CBOR, None, f"SageMaker.{operation}", cbor2.dumps({})))

    problems: dict[tuple[str, str], str] = {}
    for protocol, output, target, body in requests:
        try:
            status, headers, answer = (
                _post(server, target, body, timeout=10)
                if protocol == "json"
                else _post_cbor(server, target, body, timeout=10)
            )
        except (OSError, http.client.HTTPException) as exc:
            problems.setdefault(
                (target, type(exc).__name__), f"no answer ({exc!r}) to {body[:300]!r}"
            )
            continue
        problem = _check(output, protocol, status, headers, answer)
        if problem is not None:
            problems.setdefault(
                (target, problem.split(":")[0][:60]), f"{problem}\n    request: {body[:300]!r}"
            )
    for schedule in json.loads(_post(server, "Modelhost.ListSchedules", b'{"MaxResults": 100}')[2])[
        "Schedules"
    ]:
        _post(
            server,
            "Modelhost.DeleteSchedule",
            json.dumps({"ScheduleName": schedule["ScheduleName"]}).encode(),
        )
    alarms = cbor2.loads(_post_cbor(server, f"{_CW}.DescribeAlarms", b"\xa0")[2])
    names = [alarm["AlarmName"] for alarm in alarms.get("MetricAlarms", [])]
    if names:
        _post_cbor(server, f"{_CW}.DeleteAlarms", cbor2.dumps({"AlarmNames": names}))
    assert not problems, (
        f"{len(problems)} distinct problems in {len(requests)} requests:\n"
        + "\n".join(f"{target}: {text}" for (target, _), text in sorted(problems.items()))
    )


# --- the runtime and the other routes -----------------------------------------------------


def _runtime_requests(live: str) -> dict[str, bytes]:
    def post(
        path: str,
        body: bytes = b"5.1,3.5,1.4,0.2",
        headers: str = "Content-Type: text/csv\r\n",
        method: str = "POST",
    ) -> bytes:
        return (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}"
            "\r\nConnection: close\r\n\r\n"
        ).encode("latin-1") + body

    ok = f"/endpoints/{live}/invocations"
    chunked = (
        "POST " + ok + " HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    return {
        "unicode name": post("/endpoints/%C3%BC%F0%9F%92%A5/invocations"),
        "long name": post("/endpoints/" + "a" * 5000 + "/invocations"),
        "very long name": post("/endpoints/" + "a" * 200_000 + "/invocations"),
        "encoded slash": post("/endpoints/a%2Fb/invocations"),
        "empty name": post("/endpoints//invocations"),
        "dot dot": post("/endpoints/../invocations"),
        "nul in name": post("/endpoints/a%00b/invocations"),
        "bad percent": post("/endpoints/a%zz/invocations"),
        "invalid utf-8 name": post("/endpoints/%ff%fe/invocations"),
        "query string": post(ok + "?x=1&&=="),
        "GET": post(ok, b"", method="GET"),
        "PUT": post(ok, method="PUT"),
        "OPTIONS": post(ok, b"", method="OPTIONS"),
        "DELETE": post(ok, b"", method="DELETE"),
        "no body": post(ok, b""),
        "no content type": post(ok, headers=""),
        "huge content type": post(ok, headers="Content-Type: text/csv" + "x" * 60_000 + "\r\n"),
        "junk content type": post(ok, headers="Content-Type: ;;;=\r\n"),
        "high bytes in content type": post(ok, headers="Content-Type: text/\xff\xfe\r\n"),
        "bad accept": post(ok, headers="Content-Type: text/csv\r\nAccept: x/y;q=abc, */*;q=\r\n"),
        "latin-1 accept": post(ok, headers="Content-Type: text/csv\r\nAccept: t\xe9xt/csv\r\n"),
        "control chars in custom attributes": post(
            ok,
            headers=("Content-Type: text/csv\r\nX-Amzn-SageMaker-Custom-Attributes: \x01\x7f\r\n"),
        ),
        "huge custom attributes": post(
            ok,
            headers=(
                "Content-Type: text/csv\r\nX-Amzn-SageMaker-Custom-Attributes: "
                + "a" * 5000
                + "\r\n"
            ),
        ),
        "unknown target variant": post(
            ok, headers=("Content-Type: text/csv\r\nX-Amzn-SageMaker-Target-Variant: nope\r\n")
        ),
        "empty target variant": post(
            ok, headers=("Content-Type: text/csv\r\nX-Amzn-SageMaker-Target-Variant: \r\n")
        ),
        "binary body": post(ok, b"\xff\xfe\x00garbage"),
        "truncated json": post(ok, b'{"a":', "Content-Type: application/json\r\n"),
        "junk npy": post(ok, b"\x93NUMPY junk", "Content-Type: application/x-npy\r\n"),
        "chunked": chunked + b"f\r\n5.1,3.5,1.4,0.2\r\n0\r\n\r\n",
        "bad chunk size": chunked + b"zz\r\n5.1\r\n0\r\n\r\n",
        "Content-Length smaller than body": (
            "POST " + ok + " HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: text/csv\r\nContent-Length: 5\r\n"
            "Connection: close\r\n\r\n5.1,3.5,1.4,0.2"
        ).encode(),
        "Content-Length over 6 MB": (
            "POST " + ok + " HTTP/1.1\r\nHost: x\r\nContent-Length: "
            "7340032\r\nConnection: close\r\n\r\n"
        ).encode(),
        "negative Content-Length": (
            "POST " + ok + " HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n"
        ).encode(),
        "ping": b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST ping": post("/ping", b""),
        "HEAD ping": b"HEAD /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "metrics": b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "unknown path": b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "OPTIONS *": b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "unknown method": b"BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "HTTP/1.0": b"GET /ping HTTP/1.0\r\n\r\n",
        "TLS hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
        "absolute URI": (
            b"GET http://elsewhere/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        "POST //": post("//", b"{}", "X-Amz-Target: SageMaker.ListModels\r\n"),
        "control chunked": (
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.ListModels"
            b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n"
        ),
        "two targets": post(
            "/", b"{}", "X-Amz-Target: SageMaker.ListModels\r\nX-Amz-Target: SageMaker.Nope\r\n"
        ),
    }


def test_runtime_and_other_routes_never_5xx(server, live: str) -> None:
    problems = []
    for label, request in _runtime_requests(live).items():
        status, body = _raw(server, request)
        if status is None:
            problems.append(f"{label}: no answer ({body[:100]!r})")
        elif status >= 500 and status != 503:
            problems.append(f"{label}: {status} {body[:200]!r}")
        elif status == 503:
            problems.append(f"{label}: 503 from a healthy endpoint {body[:200]!r}")
    assert not problems, "\n".join(problems)


def test_control_plane_stays_responsive_during_a_huge_request(server) -> None:
    """Validation runs on the event loop: a request with a few hundred thousand list items
    held every other request (pings, invocations) for seconds."""
    body = json.dumps(
        {"ResourceArn": f"{ARN}:model/nope", "Tags": [{"Key": "k", "Value": "v"}] * 400_000}
    ).encode()
    latencies: list[float] = []
    done = threading.Event()

    def ping() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{server.url}/ping", timeout=30) as response:
                    response.read()
            except OSError:
                pass
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        time.sleep(0.1)
        status, _, _ = _post(server, "SageMaker.AddTags", body, timeout=60)
    finally:
        done.set()
        pinger.join()
    assert 400 <= status < 500
    assert latencies
    assert max(latencies) < 1.0, f"/ping waited {max(latencies):.2f} s behind one request"


# --- afterwards -------------------------------------------------------------------------


def test_server_still_serves(server, sagemaker, runtime, live: str) -> None:
    """Run last: after everything above the endpoint still serves (the log is checked when
    the module's server fixture ends)."""
    assert server.process is not None and server.process.poll() is None, "server died"
    assert sagemaker.describe_endpoint(EndpointName=live)["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(
        EndpointName=live, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
    )
    assert answer["Body"].read().strip() in (b"0", b"0.0")
