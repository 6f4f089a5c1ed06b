"""AsyncInferenceConfig of an endpoint config: what botocore's schema cannot check.

Notification targets are SNS topic ARNs as in SageMaker, or, on modelhost, an http(s)
URL that receives a signed webhook (no SNS needed for a self-hosted setup).
"""

from __future__ import annotations

import re
from typing import Any

from modelhost.errors import ValidationError

_SNS_ARN = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]*:[0-9]{12}:[A-Za-z0-9_.-]+$")
_WEBHOOK = re.compile(r"^https?://[^/\s]+\S*$")
_S3 = re.compile(r"^s3://[^/]+(/.*)?$")


def check_async_config(config: dict[str, Any]) -> None:
    output = config.get("OutputConfig", {})
    if not output.get("S3OutputPath"):
        raise ValidationError("AsyncInferenceConfig.OutputConfig.S3OutputPath is required.")
    for key in ("S3OutputPath", "S3FailurePath"):
        if key in output and not _S3.match(output[key]):
            raise ValidationError(
                f"AsyncInferenceConfig.OutputConfig.{key} must be an s3://bucket/prefix URI, "
                f"not {output[key]!r}."
            )
    for key, target in output.get("NotificationConfig", {}).items():
        if key in ("SuccessTopic", "ErrorTopic") and not (
            _SNS_ARN.match(target) or _WEBHOOK.match(target)
        ):
            raise ValidationError(
                f"AsyncInferenceConfig.OutputConfig.NotificationConfig.{key} must be an SNS "
                f"topic ARN or an http(s) webhook URL, not {target!r}."
            )
