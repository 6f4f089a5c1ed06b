"""AsyncInferenceConfig of an endpoint config: what botocore's schema cannot check."""

from __future__ import annotations

import re
from typing import Any

from modelhost.errors import ValidationError

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
