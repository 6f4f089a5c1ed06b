"""InvokeEndpointAsync reads and writes inside the object store only: a request naming a
local file, or a name that climbs out of the endpoint's output path, or one the store
cannot hold, is refused at submission with SageMaker's ValidationError (400), before it
is queued or runs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.support.async_inference import (
    deploy_async,
    local_path,
    put_digest_model,
    wait_for_object,
)
from tests.support.server import ServerProcess, running_server


@pytest.fixture(scope="module")
def endpoint(server, sagemaker) -> str:
    return deploy_async(sagemaker, put_digest_model(server.data_dir))


def _counts(server: ServerProcess, endpoint: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.url}/endpoints/{endpoint}/async-requests") as answer:
        return json.loads(answer.read())["Counts"]


def _refused(runtime, **params) -> str:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_async(**params)
    response = excinfo.value.response
    assert response["Error"]["Code"] == "ValidationError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(response["Error"]["Message"])


def _input(server: ServerProcess, endpoint: str) -> str:
    path = local_path(server.data_dir, f"s3://inputs/{endpoint}/in.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"n": 1}')
    return f"s3://inputs/{endpoint}/in.json"


def test_local_input_locations_are_refused(server, runtime, endpoint, tmp_path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}')
    for location in (f"file://{secret}", str(secret), "file:///etc/passwd", "/etc/passwd"):
        message = _refused(
            runtime, EndpointName=endpoint, InputLocation=location, ContentType="application/json"
        )
        assert "local path" in message and "hunter2" not in message
    assert _refused(runtime, EndpointName=endpoint, InputLocation="s3://inputs/../../etc/passwd")
    assert not any(_counts(server, endpoint).values())  # nothing was queued


@pytest.mark.parametrize(
    ("param", "header", "value"),
    [
        ("Filename", "X-Amzn-SageMaker-Filename", "../escaped.out"),
        ("Filename", "X-Amzn-SageMaker-Filename", ".."),
        ("S3OutputPathExtension", "X-Amzn-SageMaker-S3OutputPathExtension", "../../escaped"),
        ("S3OutputPathExtension", "X-Amzn-SageMaker-S3OutputPathExtension", "a/../../b"),
        ("S3OutputPathExtension", "X-Amzn-SageMaker-S3OutputPathExtension", "./a"),
        ("InferenceId", "X-Amzn-SageMaker-Inference-Id", "x" * 65),
    ],
)
def test_names_that_leave_the_output_path_are_refused(
    server, runtime, endpoint, param: str, header: str, value: str
) -> None:
    message = _refused(
        runtime,
        EndpointName=endpoint,
        InputLocation=_input(server, endpoint),
        ContentType="application/json",
        **{param: value},
    )
    assert header in message
    assert not any(_counts(server, endpoint).values())


def test_safe_output_names_are_used(server, runtime, endpoint) -> None:
    answer = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=_input(server, endpoint),
        ContentType="application/json",
        S3OutputPathExtension="day-1/batch_2",
        Filename="result.json",
    )
    assert answer["OutputLocation"] == (
        f"s3://async-results/{endpoint}/out/day-1/batch_2/result.json"
    )
    found = wait_for_object(server.data_dir, answer["OutputLocation"], answer["FailureLocation"])
    assert found == answer["OutputLocation"]


@pytest.mark.parametrize(
    "location",
    [
        "s3://inputs/" + "k" * 300,
        "s3://inputs/a/" + "k" * 256 + "/b.json",
        "s3://" + "b" * 300 + "/key",
    ],
)
def test_names_too_long_for_the_store_are_validation_errors(
    server, runtime, endpoint, location: str
) -> None:
    message = _refused(runtime, EndpointName=endpoint, InputLocation=location)
    assert "too long" in message


def test_an_object_used_as_a_folder_is_a_validation_error(server, runtime, endpoint) -> None:
    location = _input(server, endpoint)
    message = _refused(runtime, EndpointName=endpoint, InputLocation=f"{location}/deeper")
    assert "does not name an object" in message


def test_long_input_location_over_raw_http_is_sagemaker_format(server, endpoint) -> None:
    request = urllib.request.Request(
        f"{server.url}/endpoints/{endpoint}/async-invocations",
        data=b"",
        method="POST",
        headers={"X-Amzn-SageMaker-InputLocation": "s3://inputs/" + "k" * 300},
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)
    assert excinfo.value.code == 400
    assert excinfo.value.headers["x-amzn-errortype"] == "ValidationError"
    assert "too long" in json.loads(excinfo.value.read())["message"]


@pytest.fixture(scope="module")
def local_paths_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("local-paths") / "data", env={"MODELHOST_ALLOW_LOCAL_PATHS": "1"}
    ) as process:
        yield process


def test_an_operator_can_allow_local_input_locations(local_paths_server, tmp_path) -> None:
    server = local_paths_server
    endpoint = deploy_async(server.client("sagemaker"), put_digest_model(server.data_dir))
    source = tmp_path / "in.json"
    source.write_bytes(b'{"n": 7}')
    answer = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"file://{source}", ContentType="application/json"
    )
    found = wait_for_object(server.data_dir, answer["OutputLocation"], answer["FailureLocation"])
    assert found == answer["OutputLocation"]
    assert json.loads(local_path(server.data_dir, found).read_bytes())["bytes"] == 8
