"""What the examples share: clients for a running modelhost server and the object store
it reads, a packed model, and a tiny trained iris classifier.

Every example talks to a server you started (`modelhost server`), at `MODELHOST_URL`
(default http://127.0.0.1:8765). Objects go in through the S3 API: to the S3 endpoint
configured the AWS way (`AWS_ENDPOINT_URL_S3`), else to the server's own address, which
serves its embedded object store.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from typing import Any

import boto3
import joblib
from botocore.exceptions import ClientError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

URL = os.environ.get("MODELHOST_URL", "http://127.0.0.1:8765")
# Without MODELHOST_ACCESS_KEYS the server checks no signature; boto3 still needs a key.
_KEYS = {
    "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "any"),
    "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "any"),
    "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}
ROLE = "arn:aws:iam::000000000000:role/examples"


def client(service: str) -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") if service == "s3" else None
    return boto3.client(service, endpoint_url=endpoint or URL, **_KEYS)


def put(uri: str, data: bytes) -> str:
    """Put one object (making its bucket if needed); returns the URI."""
    s3 = client("s3")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return uri


def get(uri: str) -> bytes | None:
    """An object's bytes, or None while it does not exist."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return bytes(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError:
        return None


def tarball(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz holding `files` (name -> bytes) at its root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def iris_joblib() -> bytes:
    features, labels = load_iris(return_X_y=True)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=1000).fit(features, labels), buffer)
    return buffer.getvalue()


def deploy(name: str, model_url: str, image: str, **config: Any) -> None:
    """Model, EndpointConfig (one ml.m5.large unless `config` says otherwise) and
    Endpoint, all called `name`; returns once it is InService."""
    sm = client("sagemaker")
    variant = {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_url},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name, **variant}],
        **config,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
    )


def remove(name: str) -> None:
    """Delete the endpoint (waiting until it is gone), its config and its model."""
    sm = client("sagemaker")
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    sm.delete_endpoint_config(EndpointConfigName=name)
    sm.delete_model(ModelName=name)


def wait_for_object(uri: str, timeout_s: float = 120) -> bytes:
    deadline = time.monotonic() + timeout_s
    while (data := get(uri)) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"{uri} did not appear within {timeout_s:g} s")
        time.sleep(0.5)
    return data
