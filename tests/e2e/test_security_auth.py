"""What an attacker who reaches the port of a server with MODELHOST_ACCESS_KEYS set can
and cannot do: requests signed with botocore's own signer, then tampered with, sent raw
to a real server. Each is refused as AWS refuses it; the untampered request is accepted,
so a refusal is the tampering's doing and not a broken signer.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy
from tests.support.models import put_iris_model
from tests.support.server import ServerProcess, free_port

KEY, SECRET = "AKIDSECURE", "s3cr3t/key+chars"
APP, APP_SECRET = "AKIDAPP", "app-secret"
NOBODY, NOBODY_SECRET = "AKIDNOBODY", "nobody-secret"
METRICS_TOKEN = "scrape-me-7f3a"
REGION = "us-east-1"
ROW = b"5.1,3.5,1.4,0.2"


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("secured") / "data"
    put_iris_model(data)
    server = ServerProcess(
        data,
        env={"MODELHOST_ACCESS_KEYS": f"{KEY}:{SECRET}", "MODELHOST_METRICS_TOKEN": METRICS_TOKEN},
    )
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def endpoint(secured: ServerProcess) -> str:
    return deploy(_client(secured, "sagemaker"), "s3://models/iris/model.tar.gz")


def _client(server: ServerProcess, service: str, key: str = KEY, secret: str = SECRET) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def _signed(
    server: ServerProcess,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    service: str = "sagemaker",
    region: str = REGION,
    at: datetime | None = None,
) -> AWSRequest:
    """A request as a SigV4 client signs it: every header in `headers` is signed."""
    request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers or {})
    signer = SigV4Auth(Credentials(KEY, SECRET), service, region)
    if at is None:
        signer.add_auth(request)
    else:
        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: at.replace(tzinfo=None)
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = real
    return request


def _send(
    server: ServerProcess, request: AWSRequest, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """Send `request` as is (with `body` in place of the signed one, if given)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    payload = request.body if body is None else body
    path = request.url[len(server.url) :]
    connection.request(
        request.method, path, body=payload or None, headers=dict(request.headers.items())
    )
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {"raw": raw}
    return response.status, answer if isinstance(answer, dict) else {"json": answer}


def _control(target: str, params: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(params).encode(), {
        "X-Amz-Target": target,
        "Content-Type": "application/x-amz-json-1.1",
    }


def _refused(status: int, answer: dict[str, Any], code: str, message: str = "") -> None:
    assert status == 403, answer
    assert answer["__type"] == code, answer
    assert message in answer["message"], answer


# --------------------------------------------------------------------------- the body


def test_the_payload_hash_is_that_of_the_bytes_received(
    secured: ServerProcess, endpoint: str
) -> None:
    path = f"/endpoints/{endpoint}/invocations"
    csv = {"Content-Type": "text/csv"}
    honest = _signed(secured, "POST", path, ROW, csv)
    assert _send(secured, honest)[0] == 200
    # A client may state the hash; when it is the right one the request goes through.
    stated = _signed(
        secured, "POST", path, ROW, {**csv, "X-Amz-Content-SHA256": hashlib.sha256(ROW).hexdigest()}
    )
    assert _send(secured, stated)[0] == 200

    # Signed over another body's hash, or over UNSIGNED-PAYLOAD (which none of
    # SageMaker's operations take), then sent with any body: refused.
    other = b"6.3,3.3,6.0,2.5"
    lying = _signed(
        secured, "POST", path, ROW, {**csv, "X-Amz-Content-SHA256": hashlib.sha256(ROW).hexdigest()}
    )
    _refused(
        *_send(secured, lying, body=other),
        "InvalidSignatureException",
        "'x-amz-content-sha256' header does not match",
    )
    unsigned = _signed(
        secured, "POST", path, ROW, {**csv, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    _refused(*_send(secured, unsigned, body=other), "InvalidSignatureException", "does not match")
    # The same on the control plane: a signed DescribeEndpoint turned into another one.
    body, headers = _control("SageMaker.DescribeEndpoint", {"EndpointName": endpoint})
    unsigned = _signed(
        secured, "POST", "/", body, {**headers, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    _refused(
        *_send(secured, unsigned, body=b'{"EndpointName": "someone-else"}'),
        "InvalidSignatureException",
    )
    # And a plain swap of the body, no header at all.
    plain = _signed(secured, "POST", path, ROW, csv)
    _refused(
        *_send(secured, plain, body=other),
        "InvalidSignatureException",
        "The request signature we calculated does not match",
    )


# --------------------------------------------------------------------------- signed headers


def test_the_target_must_be_signed(secured: ServerProcess) -> None:
    """A signature over host and x-amz-date only would authorise any operation."""
    body, headers = _control("SageMaker.ListModels", {})
    request = _signed(secured, "POST", "/", body)  # signs host;x-amz-date
    for name, value in headers.items():
        request.headers[name] = value
    status, answer = _send(secured, request)
    _refused(
        status,
        answer,
        "IncompleteSignatureException",
        "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization.",
    )
    assert _send(secured, _signed(secured, "POST", "/", body, headers))[0] == 200


def test_runtime_headers_must_be_signed(secured: ServerProcess, endpoint: str) -> None:
    path = f"/endpoints/{endpoint}/invocations"
    request = _signed(secured, "POST", path, ROW, {"Content-Type": "text/csv"})
    request.headers["X-Amzn-SageMaker-Target-Variant"] = "AllTraffic"
    _refused(
        *_send(secured, request),
        "IncompleteSignatureException",
        "'x-amzn-sagemaker-target-variant' must be a 'SignedHeader'",
    )
    content_type = _signed(secured, "POST", path, ROW)
    content_type.headers["Content-Type"] = "application/json"
    _refused(
        *_send(secured, content_type),
        "IncompleteSignatureException",
        "'content-type' must be a 'SignedHeader'",
    )
    # boto3 signs every header it sends, so its calls with such headers go through.
    answer = _client(secured, "sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint,
        ContentType="text/csv",
        Body=ROW,
        TargetVariant="AllTraffic",
        CustomAttributes="trace=1",
    )
    assert answer["Body"].read().strip() == b"0"


# --------------------------------------------------------------------------- scope and clock


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"service": "s3"}, "Credential should be scoped to correct service: 'sagemaker'."),
        ({"service": "monitoring"}, "Credential should be scoped to correct service: 'sagemaker'."),
        (
            {"region": "eu-west-1"},
            "Credential should be scoped to a valid region, not 'eu-west-1'.",
        ),
        ({"at": -timedelta(minutes=20)}, "Signature expired: "),
        ({"at": timedelta(minutes=20)}, "Signature not yet current: "),
    ],
)
def test_credential_scope_and_clock(
    secured: ServerProcess, change: dict[str, Any], message: str
) -> None:
    if "at" in change:  # an offset from the clock now, not from when tests were collected
        change = {"at": datetime.now(UTC) + change["at"]}
    body, headers = _control("SageMaker.ListEndpoints", {})
    _refused(
        *_send(secured, _signed(secured, "POST", "/", body, headers, **change)),
        "InvalidSignatureException",
        message,
    )


def test_scope_date_must_be_the_request_date(secured: ServerProcess) -> None:
    body, headers = _control("SageMaker.ListEndpoints", {})
    request = _signed(secured, "POST", "/", body, headers)
    today = request.context["timestamp"][:8]
    request.headers["Authorization"] = request.headers["Authorization"].replace(
        f"/{today}/", "/20200101/"
    )
    _refused(
        *_send(secured, request),
        "InvalidSignatureException",
        f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
        f"from HTTP: '20200101' != '{today}'",
    )


def test_each_service_signs_with_its_own_name(secured: ServerProcess) -> None:
    """botocore's signing names: application-autoscaling, monitoring (CloudWatch)."""
    assert "ScalableTargets" in _client(
        secured, "application-autoscaling"
    ).describe_scalable_targets(ServiceNamespace="sagemaker")
    assert "MetricAlarms" in _client(secured, "cloudwatch").describe_alarms()
    body, headers = _control(
        "AnyScaleFrontendService.DescribeScalableTargets", {"ServiceNamespace": "sagemaker"}
    )
    _refused(
        *_send(secured, _signed(secured, "POST", "/", body, headers)),
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'application-autoscaling'.",
    )


# --------------------------------------------------------------------------- modelhost's GETs


def test_metrics_and_load_curves_need_a_signature_or_the_token(secured: ServerProcess) -> None:
    for path in ("/metrics", "/inference-recommendations-jobs/any/load-curves"):
        _refused(
            *_send(secured, AWSRequest("GET", secured.url + path)),
            "MissingAuthenticationTokenException",
        )
    wrong = AWSRequest(
        "GET", secured.url + "/metrics", headers={"Authorization": "Bearer not-the-token"}
    )
    assert _send(secured, wrong)[0] == 403
    scraper = AWSRequest(
        "GET", secured.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    status, answer = _send(secured, scraper)
    assert status == 200 and b"modelhost_" in answer["raw"]
    assert _send(secured, _signed(secured, "GET", "/metrics"))[0] == 200
    # The metrics token opens /metrics and nothing else.
    curves = AWSRequest(
        "GET",
        secured.url + "/inference-recommendations-jobs/x/load-curves",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
    )
    assert _send(secured, curves)[0] == 403
    status, _ = _send(
        secured, _signed(secured, "GET", "/inference-recommendations-jobs/x/load-curves")
    )
    assert status == 404  # signed: through to the route, which knows no such job


# --------------------------------------------------------------------------- permissions


POLICY = {
    KEY: {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    },
    APP: {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sagemaker:InvokeEndpoint", "sagemaker:Describe*"],
                "Resource": "arn:aws:sagemaker:*:*:endpoint/prod-*",
            },
            {
                "Effect": "Deny",
                "Action": "sagemaker:*",
                "Resource": "arn:aws:sagemaker:*:*:endpoint/prod-secret",
            },
        ]
    },
}


@pytest.fixture(scope="module")
def governed(tmp_path_factory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("governed") / "data"
    policy = data.parent / "policy.json"
    policy.write_text(json.dumps(POLICY))
    server = ServerProcess(
        data,
        env={
            "MODELHOST_ACCESS_KEYS": f"{KEY}:{SECRET},{APP}:{APP_SECRET},{NOBODY}:{NOBODY_SECRET}",
            "MODELHOST_POLICY_FILE": str(policy),
        },
    )
    yield server.start()
    server.stop()


def _denied(call: Any, message: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        call()
    error = excinfo.value.response
    assert error["Error"]["Code"] == "AccessDeniedException", error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in error["Error"]["Message"], error


def _not_found(call: Any) -> None:
    """Allowed: the call gets past the policy to the operation, which finds nothing."""
    with pytest.raises(ClientError) as excinfo:
        call()
    assert excinfo.value.response["Error"]["Code"] in ("ValidationException", "ValidationError")


def test_policies_allow_deny_and_deny_wins(governed: ServerProcess) -> None:
    runtime = _client(governed, "sagemaker-runtime", APP, APP_SECRET)
    sagemaker = _client(governed, "sagemaker", APP, APP_SECRET)
    _not_found(lambda: runtime.invoke_endpoint(EndpointName="prod-a", Body=ROW))
    _not_found(lambda: sagemaker.describe_endpoint(EndpointName="prod-a"))
    _denied(
        lambda: runtime.invoke_endpoint(EndpointName="dev-a", Body=ROW),
        f"User: arn:aws:iam::000000000000:user/{APP} is not authorized to perform: "
        "sagemaker:InvokeEndpoint on resource: "
        "arn:aws:sagemaker:us-east-1:000000000000:endpoint/dev-a because no "
        "identity-based policy allows the sagemaker:InvokeEndpoint action",
    )
    _denied(
        lambda: runtime.invoke_endpoint(EndpointName="prod-secret", Body=ROW),
        "endpoint/prod-secret with an explicit deny in an identity-based policy",
    )
    _denied(
        lambda: runtime.invoke_endpoint_async(EndpointName="prod-a", InputLocation="s3://b/k"),
        "sagemaker:InvokeEndpointAsync",
    )
    _denied(sagemaker.list_endpoints, "sagemaker:ListEndpoints on resource: *")
    _denied(lambda: sagemaker.delete_endpoint(EndpointName="prod-a"), "sagemaker:DeleteEndpoint")
    _denied(
        lambda: _client(
            governed, "application-autoscaling", APP, APP_SECRET
        ).describe_scalable_targets(ServiceNamespace="sagemaker"),
        "application-autoscaling:DescribeScalableTargets",
    )
    _denied(
        lambda: _client(governed, "sagemaker", NOBODY, NOBODY_SECRET).list_models(),
        f"user/{NOBODY} is not authorized to perform: sagemaker:ListModels",
    )
    # The key allowed everything does everything, CloudWatch included.
    assert _client(governed, "sagemaker").list_endpoints()["Endpoints"] == []
    assert "MetricAlarms" in _client(governed, "cloudwatch").describe_alarms()


@pytest.mark.parametrize(
    ("policy", "complaint"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"AKIDELSEWHERE": {"Statement": []}}), "not one of MODELHOST_ACCESS_KEYS"),
        (
            json.dumps(
                {
                    KEY: {
                        "Statement": [
                            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}
                        ]
                    }
                }
            ),
            "Condition is not supported",
        ),
        (
            json.dumps({KEY: {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}),
            "Effect must be Allow or Deny",
        ),
    ],
)
def test_a_bad_policy_file_stops_the_server_with_one_line(
    tmp_path: Path, policy: str, complaint: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(policy)
    env = {"MODELHOST_ACCESS_KEYS": f"{KEY}:{SECRET}", "MODELHOST_POLICY_FILE": str(path)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelhost",
            "server",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env={**ServerProcess(tmp_path).env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0] and "MODELHOST_POLICY_FILE" in lines[0]
