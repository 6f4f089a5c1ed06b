"""InvokeEndpointWithResponseStream end to end: boto3 against a real server, a model
server that streams its answer chunk by chunk, and botocore parsing our event stream."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from modelhost.runtime import eventstream
from tests.support.async_inference import deploy_async
from tests.support.endpoints import deploy, deployed, unique, wait_for_status
from tests.support.processes import wait_until
from tests.support.server import ServerProcess
from tests.support.streaming import put_token_model

TOKENS = ["Once", " upon", " a", " time", " there", " was", " a", " stream", "."]


@pytest.fixture(scope="module")
def streamer(sagemaker, server: ServerProcess) -> str:
    return deploy(sagemaker, put_token_model(server.data_dir), image="modelhost/python")


def _invoke(runtime, endpoint: str, accept: str | None = None, **request: object) -> dict:
    extra = {"Accept": accept} if accept else {}
    return runtime.invoke_endpoint_with_response_stream(
        EndpointName=endpoint,
        ContentType="application/json",
        Body=json.dumps(request),
        CustomAttributes="trace=42",
        **extra,
    )


def test_event_stream_frames_parse_with_botocore() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(
        eventstream.payload_part(b"tok")
        + eventstream.payload_part(b"")
        + eventstream.stream_error("ModelStreamError", "broke", "StreamBroken")
    )
    first, empty, error = list(buffer)
    assert first.payload == b"tok" and empty.payload == b""
    assert first.headers[":event-type"] == "PayloadPart"
    assert error.headers[":exception-type"] == "ModelStreamError"
    assert json.loads(error.payload) == {"Message": "broke", "ErrorCode": "StreamBroken"}


def test_parts_arrive_as_separate_events_while_the_model_still_works(
    runtime, streamer: str, tmp_path: Path
) -> None:
    release, marker = tmp_path / "release", tmp_path / "marker"
    response = _invoke(
        runtime,
        streamer,
        accept="text/event-stream",
        tokens=TOKENS,
        release=str(release),
        marker=str(marker),
    )
    assert response["ContentType"] == "text/event-stream"  # Accept reached the model
    assert response["CustomAttributes"] == "echo trace=42"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == (
        "application/vnd.amazon.eventstream"
    )
    parts = []
    for event in response["Body"]:
        if not parts:
            # The model waits for `release` before its last token and only then writes
            # `marker`: a buffered answer could not have reached us yet.
            assert not marker.exists()
            release.touch()
        parts.append(event["PayloadPart"]["Bytes"].decode())
    assert parts == TOKENS
    assert marker.exists()


def test_async_generator_streams_too(runtime, streamer: str) -> None:
    response = _invoke(runtime, streamer, tokens=TOKENS[:3], delay=0.01, **{"async": True})
    assert [e["PayloadPart"]["Bytes"] for e in response["Body"]] == [b"Once", b" upon", b" a"]


def test_a_streaming_model_still_answers_invoke_endpoint_whole(runtime, streamer: str) -> None:
    answer = runtime.invoke_endpoint(
        EndpointName=streamer, ContentType="application/json", Body=json.dumps({"tokens": TOKENS})
    )
    assert answer["Body"].read().decode() == "".join(TOKENS)


def test_error_mid_stream_ends_with_model_stream_error(runtime, streamer: str) -> None:
    response = _invoke(runtime, streamer, tokens=TOKENS, fail_after=2)
    parts = []
    with pytest.raises(EventStreamError) as raised:
        for event in response["Body"]:
            parts.append(event["PayloadPart"]["Bytes"])
    assert parts == [b"Once", b" upon"]
    assert raised.value.response["Error"]["Code"] == "ModelStreamError"


def test_mid_stream_error_event_carries_its_error_code(
    server: ServerProcess, streamer: str
) -> None:
    """botocore keeps only Code and Message of an exception event; the ErrorCode
    (StreamBroken here) is read from the raw frames."""
    request = urllib.request.Request(
        f"{server.url}/endpoints/{streamer}/invocations-response-stream",
        data=json.dumps({"tokens": TOKENS, "fail_after": 1}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    buffer = EventStreamBuffer()
    with urllib.request.urlopen(request, timeout=30) as response:
        buffer.add_data(response.read())
    part, error = list(buffer)
    assert part.payload == b"Once"
    assert error.headers[":exception-type"] == "ModelStreamError"
    assert json.loads(error.payload)["ErrorCode"] == "StreamBroken"


def test_error_before_the_first_part_is_a_model_error(runtime, streamer: str) -> None:
    with pytest.raises(ClientError) as raised:
        _invoke(runtime, streamer, tokens=TOKENS, fail_after=0)
    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "the generator broke at token 0" in error["OriginalMessage"]


def test_unknown_endpoint_is_a_validation_error(runtime) -> None:
    with pytest.raises(ClientError) as raised:
        _invoke(runtime, unique("nowhere"), tokens=TOKENS)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_client_that_goes_away_stops_the_model(
    server: ServerProcess, streamer: str, tmp_path: Path
) -> None:
    closed = tmp_path / "closed"
    body = json.dumps({"tokens": ["t"] * 2000, "delay": 0.01, "closed": str(closed)})
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(
        "POST",
        f"/endpoints/{streamer}/invocations-response-stream",
        body,
        {"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200
    assert response.read1(65536)  # the first part(s) arrived
    connection.close()
    # The model server closes the generator on its own thread; 2000 tokens at 10 ms would
    # take 20 s to run out, far past this wait.
    wait_until(closed.exists, timeout_s=15, what="the generator to be closed")
    assert closed.read_text().startswith("closed after")


def test_cli_prints_parts_as_they_come(
    server: ServerProcess, streamer: str, tmp_path: Path
) -> None:
    release, marker = tmp_path / "release", tmp_path / "marker"
    lines = ["first line\n", "second line\n", "last line\n"]
    body = json.dumps({"tokens": lines, "release": str(release), "marker": str(marker)})
    command = [
        sys.executable,
        "-m",
        "modelhost",
        "endpoints",
        "invoke",
        streamer,
        "--stream",
        "--endpoint-url",
        server.url,
        "--content-type",
        "application/json",
        "--body",
        body,
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "first line\n"
        assert not marker.exists()
        release.touch()
        rest = process.stdout.read()  # the rest, through the same buffered reader
        errors = process.stderr.read() if process.stderr else ""
        process.wait(timeout=60)
    assert process.returncode == 0, errors
    assert rest == "second line\nlast line\n"
    assert "variant: AllTraffic" in errors


def test_the_model_timeout_bounds_each_gap_not_the_whole_stream(runtime, streamer: str) -> None:
    """The session server's model timeout is 5 s: three 2 s gaps make a 6 s stream."""
    response = _invoke(runtime, streamer, tokens=["a", "b", "c"], delay=2)
    assert [e["PayloadPart"]["Bytes"] for e in response["Body"]] == [b"a", b"b", b"c"]


def test_a_gap_past_the_model_timeout_ends_the_stream(runtime, streamer: str) -> None:
    response = _invoke(runtime, streamer, tokens=["a", "b"], delay=0, gap=6)
    parts = []
    with pytest.raises(EventStreamError) as raised:
        for event in response["Body"]:
            parts.append(event["PayloadPart"]["Bytes"])
    assert parts == [b"a"]
    assert raised.value.response["Error"]["Code"] == "ModelStreamError"
    assert "sent nothing for 5 s" in raised.value.response["Error"]["Message"]


def test_asynchronous_endpoints_refuse_streaming(
    sagemaker, runtime, server: ServerProcess, streamer: str
) -> None:
    name = deploy_async(sagemaker, put_token_model(server.data_dir))
    with pytest.raises(ClientError) as raised:
        _invoke(runtime, name, tokens=TOKENS)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpointAsync" in raised.value.response["Error"]["Message"]


def test_serverless_endpoints_refuse_streaming(sagemaker, runtime, server: ServerProcess) -> None:
    name = unique("sl")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
        PrimaryContainer={
            "Image": "modelhost/python",
            "ModelDataUrl": put_token_model(server.data_dir),
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    wait_for_status(sagemaker, name, {"InService"})
    with pytest.raises(ClientError) as raised:
        _invoke(runtime, name, tokens=TOKENS)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "serverless" in raised.value.response["Error"]["Message"]
