"""The AWS environment of every process the tests and benchmarks start.

Dummy credentials (the server checks the shape of a SigV4 signature, and moto accepts
these), and the variables that could steer botocore or s3fs toward a real account or some
S3 other than the one under test, which are never inherited.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

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


def aws_cli_env(home: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    """The AWS CLI's environment: none of this process's AWS_* variables, the dummy credentials, its
    config and credentials files under `home` (so no ~/.aws is read) and no instance
    metadata look-up; with `url`, only AWS_ENDPOINT_URL points it at modelhost."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {
        **TEST_ENV,
        **({"AWS_ENDPOINT_URL": url} if url else {}),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def cloudwatch_held_to(url: str, folder: Path, protocol: str) -> Any:
    """A cloudwatch client for the server at `url` held to one of the protocols
    CloudWatch's model lists (botocore picks JSON where the model offers several): the
    same model, written under `folder` with that protocol its only one."""
    session = botocore.session.get_session()
    model = session.get_component("data_loader").load_service_model("cloudwatch", "service-2")
    model["metadata"]["protocol"] = protocol
    model["metadata"]["protocols"] = [protocol]
    version = folder / "cloudwatch" / model["metadata"]["apiVersion"]
    version.mkdir(parents=True)
    (version / "service-2.json").write_text(json.dumps(model))
    session.get_component("data_loader").search_paths.insert(0, str(folder))
    return boto3.Session(botocore_session=session).client(
        "cloudwatch",
        endpoint_url=url,
        region_name=TEST_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}),
    )
