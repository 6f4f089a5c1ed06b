"""Asynchronous inference end to end: boto3's InvokeEndpointAsync against a real server."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.support.async_inference import (
    deploy_async,
    local_path,
    put_digest_model,
    wait_for_object,
)
from tests.support.cli import run_cli
from tests.support.endpoints import deploy, wait_for_status
from tests.support.processes import peak_rss_mb


@pytest.fixture(scope="module")
def digest_model(server) -> str:
    return put_digest_model(server.data_dir)


@pytest.fixture(scope="module")
def endpoint(sagemaker, digest_model: str) -> str:
    return deploy_async(sagemaker, digest_model)


def _put_input(server, key: str, body: bytes) -> str:
    path = local_path(server.data_dir, f"s3://async-inputs/{key}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return f"s3://async-inputs/{key}"


def test_result_appears_at_output_location(server, sagemaker, runtime, endpoint) -> None:
    body = b"5.1,3.5,1.4,0.2\n" * 10
    location = _put_input(server, "one.csv", body)
    answer = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=location,
        ContentType="text/csv",
        InferenceId="my-inference-1",
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "my-inference-1"
    assert answer["OutputLocation"].startswith(f"s3://async-results/{endpoint}/out/")
    assert answer["FailureLocation"].startswith(f"s3://async-results/{endpoint}/failed/")
    found = wait_for_object(server.data_dir, answer["OutputLocation"], answer["FailureLocation"])
    assert found == answer["OutputLocation"]
    result = json.loads(local_path(server.data_dir, found).read_bytes())
    assert result["bytes"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint)
    assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"].endswith("/out")


def _update_to_realtime(sagemaker, name: str) -> None:
    """Update the endpoint to a config with the same variants and no AsyncInferenceConfig."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{name}-rt", ProductionVariants=config["ProductionVariants"]
    )
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-rt")
    wait_for_status(sagemaker, name, {"InService"})


def test_describe_endpoint_shows_the_async_config(sagemaker, digest_model: str) -> None:
    name = deploy_async(sagemaker, digest_model, per_instance=2)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["AsyncInferenceConfig"] == config["AsyncInferenceConfig"]
    assert described["AsyncInferenceConfig"]["ClientConfig"] == {
        "MaxConcurrentInvocationsPerInstance": 2
    }
    # Updated to a real-time config, the endpoint no longer shows one.
    _update_to_realtime(sagemaker, name)
    assert "AsyncInferenceConfig" not in sagemaker.describe_endpoint(EndpointName=name)


def test_realtime_invocation_of_an_async_endpoint_is_refused(
    sagemaker, runtime, digest_model: str
) -> None:
    # SageMaker: an endpoint whose config has an AsyncInferenceConfig only receives
    # asynchronous invocations.
    name = deploy_async(sagemaker, digest_model)
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint(EndpointName=name, Body=b'{"n": 1}', ContentType="application/json")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "InvokeEndpointAsync" in refused.value.response["Error"]["Message"]
    # The same model behind a real-time config answers.
    _update_to_realtime(sagemaker, name)
    answer = runtime.invoke_endpoint(
        EndpointName=name, Body=b'{"n": 1}', ContentType="application/json"
    )
    assert json.loads(answer["Body"].read())["bytes"] == len(b'{"n": 1}')


def test_model_error_writes_failure_object(server, runtime, endpoint) -> None:
    location = _put_input(server, "fail.json", json.dumps({"fail": "bad flower"}).encode())
    answer = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=location, ContentType="application/json"
    )
    found = wait_for_object(server.data_dir, answer["OutputLocation"], answer["FailureLocation"])
    assert found == answer["FailureLocation"]
    assert "the model refuses: bad flower" in local_path(server.data_dir, found).read_text()
    assert not local_path(server.data_dir, answer["OutputLocation"]).exists()


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_missing_input_object_is_a_validation_error(runtime, endpoint) -> None:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_async(
            EndpointName=endpoint, InputLocation="s3://async-inputs/absent.csv"
        )
    code, status, message = _error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "absent.csv" in message


def test_unknown_endpoint_is_a_validation_error(server, runtime) -> None:
    location = _put_input(server, "x.csv", b"1")
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_async(EndpointName="no-such-async", InputLocation=location)
    assert _error(excinfo)[:2] == ("ValidationError", 400)


def test_endpoint_without_async_config_is_a_validation_error(
    server, sagemaker, runtime, iris_model_url: str
) -> None:
    name = deploy(sagemaker, iris_model_url)
    location = _put_input(server, "y.csv", b"5.1,3.5,1.4,0.2")
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_async(EndpointName=name, InputLocation=location)
    code, status, message = _error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "AsyncInferenceConfig" in message


@pytest.mark.parametrize("ttl", ["59", "soon", "21601"])
def test_bad_ttl_is_a_validation_error(server, endpoint, ttl: str) -> None:
    # botocore refuses these before sending; other clients may not.
    location = _put_input(server, "z.csv", b"1")
    request = urllib.request.Request(
        f"{server.url}/endpoints/{endpoint}/async-invocations",
        data=b"",
        method="POST",
        headers={
            "X-Amzn-SageMaker-InputLocation": location,
            "X-Amzn-SageMaker-RequestTTLSeconds": ttl,
        },
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)
    assert excinfo.value.code == 400
    assert excinfo.value.headers["x-amzn-errortype"] == "ValidationError"
    assert "RequestTTLSeconds" in json.loads(excinfo.value.read())["message"]


def test_async_config_needs_an_output_path(sagemaker, digest_model: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        deploy_async(
            sagemaker,
            digest_model,
            output_config={"S3FailurePath": "s3://async-results/f"},
            wait=False,
        )
    assert _error(excinfo)[0] == "ValidationException"


def test_large_payload_streams_through_the_server(server, runtime, endpoint) -> None:
    size = 256 * 1024 * 1024
    block = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)
    path = local_path(server.data_dir, "s3://async-inputs/large.bin")
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for index in range(size // len(block)):
            chunk = index.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            f.write(chunk)
    peak_before = peak_rss_mb(server.pid)
    answer = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation="s3://async-inputs/large.bin",
        ContentType="application/octet-stream",
    )
    found = wait_for_object(
        server.data_dir, answer["OutputLocation"], answer["FailureLocation"], timeout_s=120
    )
    assert found == answer["OutputLocation"], local_path(server.data_dir, found).read_text()
    result = json.loads(local_path(server.data_dir, found).read_bytes())
    assert result == {**result, "bytes": size, "sha256": digest.hexdigest()}
    # The server streamed it: its peak memory grew by far less than the payload.
    assert peak_rss_mb(server.pid) - peak_before < size / 8 / 2**20
    path.unlink()


def test_cli_lists_failed_and_queued_requests(server, runtime, endpoint) -> None:
    location = _put_input(server, "cli-fail.json", json.dumps({"fail": "for the cli"}).encode())
    failed = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=location, ContentType="application/json"
    )
    wait_for_object(server.data_dir, failed["FailureLocation"])
    listed = run_cli(
        "endpoints", "async-requests", endpoint, "--state", "failed", "--json", url=server.url
    )
    assert listed.returncode == 0, listed.stderr
    answer = json.loads(listed.stdout)
    assert answer["Counts"]["failed"] >= 1
    mine = [r for r in answer["Requests"] if r["inference_id"] == failed["InferenceId"]]
    assert mine and "for the cli" in mine[0]["error"]
    assert {r["state"] for r in answer["Requests"]} == {"failed"}

    table = run_cli("endpoints", "async-requests", endpoint, url=server.url)
    assert table.returncode == 0, table.stderr
    assert failed["InferenceId"] in table.stdout and "failed" in table.stdout

    unknown = run_cli("endpoints", "async-requests", "no-such-endpoint", url=server.url)
    assert unknown.returncode == 1
    assert "no-such-endpoint" in unknown.stderr
