"""Asynchronous inference against real S3 and SNS (a moto server) and an HTTP webhook:
results and errors are written to S3, and each outcome is announced."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import boto3
import pytest

from modelhost.runtime.notifications import SIGNATURE_HEADER, sign
from tests.support.async_inference import DIGEST_CODE, deploy_async
from tests.support.models import model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.server import ServerProcess

SECRET = "webhook-secret-for-tests"


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    calls = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        if type(self).calls == 1:  # the first delivery fails: the notifier must retry
            self.send_response(503)
        else:
            type(self).received.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory, moto: MotoServer) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("async-s3") / "data",
        env={
            "AWS_ENDPOINT_URL_S3": moto.endpoint_url,
            "AWS_ENDPOINT_URL_SNS": moto.endpoint_url,
            "MODELHOST_WEBHOOK_SECRET": SECRET,
            "MODELHOST_ASYNC_POLL_INTERVAL": "0.2",
        },
    ).start()
    yield server
    server.stop()


def _client(moto: MotoServer, service: str):
    return boto3.client(
        service,
        endpoint_url=moto.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _wait_for_key(s3, bucket: str, *keys: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for key in keys:
            if s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"):
                return key
        time.sleep(0.1)
    raise AssertionError(f"none of {keys} appeared in {bucket}")


def _key(uri: str) -> str:
    return uri.split("/", 3)[3]


def test_results_on_s3_and_sns_notifications(s3_server, moto) -> None:
    s3, sns, sqs = (_client(moto, s) for s in ("s3", "sns", "sqs"))
    bucket = f"async-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="models/digest.tar.gz",
        Body=model_tarball({"code/inference.py": DIGEST_CODE}),
    )
    topics = {
        kind: sns.create_topic(Name=f"{kind}-{bucket}")["TopicArn"] for kind in ("success", "error")
    }
    queue_url = sqs.create_queue(QueueName=f"notes-{bucket}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    for topic in topics.values():
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    endpoint = deploy_async(
        s3_server.client("sagemaker"),
        f"s3://{bucket}/models/digest.tar.gz",
        output_config={
            "S3OutputPath": f"s3://{bucket}/out",
            "S3FailurePath": f"s3://{bucket}/failed",
            "NotificationConfig": {
                "SuccessTopic": topics["success"],
                "ErrorTopic": topics["error"],
            },
        },
    )
    runtime = s3_server.client("sagemaker-runtime")
    s3.put_object(Bucket=bucket, Key="in/good.bin", Body=b"\x00\x01" * 300_000)
    s3.put_object(Bucket=bucket, Key="in/bad.json", Body=b'{"fail": "no"}')
    good = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=f"s3://{bucket}/in/good.bin",
        ContentType="application/octet-stream",
    )
    bad = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=f"s3://{bucket}/in/bad.json",
        ContentType="application/json",
    )
    assert _wait_for_key(
        s3, bucket, _key(good["OutputLocation"]), _key(good["FailureLocation"])
    ) == _key(good["OutputLocation"])
    result = json.loads(
        s3.get_object(Bucket=bucket, Key=_key(good["OutputLocation"]))["Body"].read()
    )
    assert result["bytes"] == 600_000
    assert _wait_for_key(
        s3, bucket, _key(bad["OutputLocation"]), _key(bad["FailureLocation"])
    ) == _key(bad["FailureLocation"])
    error = s3.get_object(Bucket=bucket, Key=_key(bad["FailureLocation"]))["Body"].read()
    assert b"the model refuses: no" in error

    notes: dict[str, dict] = {}
    deadline = time.monotonic() + 30
    while len(notes) < 2 and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", []):
            note = json.loads(message["Body"])
            notes[note["inferenceId"]] = note
    assert notes[good["InferenceId"]]["invocationStatus"] == "Completed"
    assert (
        notes[good["InferenceId"]]["responseParameters"]["outputLocation"] == good["OutputLocation"]
    )
    assert notes[bad["InferenceId"]]["invocationStatus"] == "Failed"
    assert "the model refuses: no" in notes[bad["InferenceId"]]["failureReason"]


def test_webhook_gets_a_signed_notification_after_a_retry(s3_server, moto, webhook) -> None:
    s3 = _client(moto, "s3")
    bucket = f"hook-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="models/digest.tar.gz",
        Body=model_tarball({"code/inference.py": DIGEST_CODE}),
    )
    endpoint = deploy_async(
        s3_server.client("sagemaker"),
        f"s3://{bucket}/models/digest.tar.gz",
        output_config={"S3OutputPath": f"s3://{bucket}/out"},
        tags={"modelhost:SuccessWebhook": webhook},
    )
    s3.put_object(Bucket=bucket, Key="in/x.csv", Body=b"1,2,3,4")
    answer = s3_server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"s3://{bucket}/in/x.csv", ContentType="text/csv"
    )
    deadline = time.monotonic() + 30
    while not _Webhook.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _Webhook.calls >= 2
    headers, body = _Webhook.received[0]
    assert headers[SIGNATURE_HEADER] == sign(SECRET, body)
    note = json.loads(body)
    assert note["inferenceId"] == answer["InferenceId"]
    assert note["responseParameters"]["outputLocation"] == answer["OutputLocation"]
