"""Optional SigV4 authentication: with MODELHOST_ACCESS_KEYS set, only requests signed by
one of those keys get through, on the control plane and the runtime alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy
from tests.support.models import put_iris_model
from tests.support.server import ServerProcess

KEY, SECRET = "AKIDMODELHOST", "s3cr3t/with+chars"


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("secured") / "data"
    put_iris_model(data)
    server = ServerProcess(data, env={"MODELHOST_ACCESS_KEYS": f"other:x,{KEY}:{SECRET}"})
    yield server.start()
    server.stop()


def _client(server: ServerProcess, service: str, key: str = KEY, secret: str = SECRET):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_signed_requests_work_end_to_end(secured: ServerProcess) -> None:
    name = deploy(_client(secured, "sagemaker"), "s3://models/iris/model.tar.gz")
    answer = _client(secured, "sagemaker-runtime").invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
    )
    assert answer["Body"].read().strip() == b"0"


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [
        (KEY, "wrong", "InvalidSignatureException"),
        ("AKIDUNKNOWN", SECRET, "UnrecognizedClientException"),
    ],
)
def test_bad_credentials_are_refused(
    secured: ServerProcess, key: str, secret: str, code: str
) -> None:
    for service, call in (
        ("sagemaker", lambda c: c.list_models()),
        ("sagemaker-runtime", lambda c: c.invoke_endpoint(EndpointName="x", Body=b"1")),
    ):
        with pytest.raises(ClientError) as excinfo:
            call(_client(secured, service, key, secret))
        assert excinfo.value.response["Error"]["Code"] == code
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unsigned_requests_are_refused(secured: ServerProcess) -> None:
    request = urllib.request.Request(
        secured.url, method="POST", data=b"{}", headers={"X-Amz-Target": "SageMaker.ListModels"}
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request)
    assert excinfo.value.code == 403
    assert json.loads(excinfo.value.read())["__type"] == "MissingAuthenticationTokenException"


def test_aws_cli_signs_its_way_in(secured: ServerProcess) -> None:
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed (the dev extra)")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    ok = subprocess.run(
        [
            str(aws),
            "sagemaker",
            "list-endpoints",
            "--endpoint-url",
            secured.url,
            "--region",
            "us-east-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "Endpoints" in json.loads(ok.stdout)
    env["AWS_SECRET_ACCESS_KEY"] = "nope"
    refused = subprocess.run(
        [
            str(aws),
            "sagemaker",
            "list-endpoints",
            "--endpoint-url",
            secured.url,
            "--region",
            "us-east-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "InvalidSignatureException" in refused.stderr
