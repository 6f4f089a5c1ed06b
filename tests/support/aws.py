"""The AWS environment of every process the tests and benchmarks start.

Dummy credentials (the server checks the shape of a SigV4 signature, and moto accepts
these), and the variables that could steer botocore or s3fs toward a real account or some
S3 other than the one under test, which are never inherited.
"""

from __future__ import annotations

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

AWS_STEERING_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_SESSION_TOKEN",
    "MODELHOST_S3",
)


def isolated_environ(
    environ: dict[str, str], extra: dict[str, str] | None = None
) -> dict[str, str]:
    """`environ` without the steering variables, with the dummy credentials, then `extra`
    (which may set any of them on purpose, e.g. the endpoint of a moto server)."""
    kept = {k: v for k, v in environ.items() if k not in AWS_STEERING_VARS}
    return {**kept, **TEST_ENV, **(extra or {})}
