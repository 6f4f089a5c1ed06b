"""Success and error notifications of asynchronous inference.

A target is an SNS topic ARN (published with boto3, so `AWS_ENDPOINT_URL_SNS` and the
usual credential chain pick the SNS service) or an http(s) URL that receives the same
JSON document as a webhook (named by the endpoint config's `modelhost:SuccessWebhook` and
`modelhost:ErrorWebhook` tags, since NotificationConfig takes SNS topics only). Webhook
bodies are signed with HMAC-SHA256 under `MODELHOST_WEBHOOK_SECRET`, sent as
`X-Modelhost-Signature: sha256=<hex>`, so a receiver can tell a notification from a
forgery. Both kinds are retried with backoff; a target that
stays down loses the notification (logged), never the result, which is already stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Modelhost-Signature"
_ATTEMPTS = 4
_FIRST_BACKOFF_S = 0.5
_WEBHOOK_TIMEOUT_S = 10.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(self, region: str, secret: str) -> None:
        self.region = region
        self.secret = secret
        self._sns: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, target: str, message: dict[str, Any]) -> None:
        """Deliver in the background: a slow webhook must not hold a worker slot."""
        task = asyncio.create_task(self._deliver(target, orjson.dumps(message)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, target: str, body: bytes) -> None:
        send = self._post if target.startswith(("http://", "https://")) else self._publish
        delay = _FIRST_BACKOFF_S
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                await asyncio.to_thread(send, target, body)
                return
            except Exception as exc:  # any failure of a foreign service: retry, then log
                if attempt == _ATTEMPTS:
                    log.error(
                        "notification to %s failed after %d attempts: %s", target, attempt, exc
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2

    def _post(self, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=_WEBHOOK_TIMEOUT_S) as response:
            if response.status >= 300:
                raise urllib.error.HTTPError(
                    url, response.status, "not 2xx", response.headers, None
                )

    def _publish(self, topic_arn: str, body: bytes) -> None:
        if self._sns is None:
            import boto3  # deferred: only servers with SNS targets need a client

            region = topic_arn.split(":")[3] or self.region
            self._sns = boto3.client("sns", region_name=region)
        self._sns.publish(TopicArn=topic_arn, Message=body.decode())


def notification(job: Any, region: str, succeeded: bool, error: str | None) -> dict[str, Any]:
    """SageMaker's asynchronous inference notification document."""
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": _iso(time.time()),
        "receivedTime": _iso(job.created),
        "invocationStatus": "Completed" if succeeded else "Failed",
        "requestParameters": {
            "contentType": job.content_type or "application/octet-stream",
            "endpointName": job.endpoint,
            "inputLocation": job.input_location,
        },
        "inferenceId": job.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if succeeded:
        message["responseParameters"] = {"outputLocation": job.output_location}
    else:
        message["failureReason"] = error
        message["responseParameters"] = {"failureLocation": job.failure_location}
    return message


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
