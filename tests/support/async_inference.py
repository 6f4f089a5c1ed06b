"""Asynchronous inference helpers for tests: an endpoint with an AsyncInferenceConfig, a
model that reports what it received, and waiting for result objects."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.endpoints import deployed, unique, wait_for_status
from tests.support.models import put_model

# Answers with the size and SHA-256 of the body it got, so large payloads can be checked
# end to end; JSON bodies may ask it to fail or to sleep.
DIGEST_CODE = b"""
import hashlib, json, os, threading, time
active = 0
lock = threading.Lock()
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    global active
    if isinstance(body, str):
        body = body.encode()
    with lock:
        active += 1
    try:
        if content_type == "application/json":
            request = json.loads(body)
            if "fail" in request:
                raise ValueError("the model refuses: " + request["fail"])
            time.sleep(request.get("sleep", 0))
        with lock:
            overlapping = active
    finally:
        with lock:
            active -= 1
    answer = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
              "pid": os.getpid(), "overlapping": overlapping}
    return json.dumps(answer), "application/json"
"""


def put_digest_model(data_dir: Path) -> str:
    return put_model(data_dir, "digest", {"code/inference.py": DIGEST_CODE})


def deploy_async(
    sagemaker: Any,
    model_url: str,
    *,
    count: int = 1,
    output_config: dict[str, Any] | None = None,
    per_instance: int | None = None,
    image: str = "modelhost/python",
    tags: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
    wait: bool = True,
) -> str:
    name = unique("async")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": model_url,
            "Environment": environment or {},
        },
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    config: dict[str, Any] = {
        "OutputConfig": output_config
        or {
            "S3OutputPath": f"s3://async-results/{name}/out",
            "S3FailurePath": f"s3://async-results/{name}/failed",
        }
    }
    if per_instance is not None:
        config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": per_instance}
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
            }
        ],
        AsyncInferenceConfig=config,
        Tags=[{"Key": key, "Value": value} for key, value in (tags or {}).items()],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    if wait:
        wait_for_status(sagemaker, name, {"InService"})
    return name


def local_path(data_dir: Path, uri: str) -> Path:
    """Where the embedded object store keeps `s3://bucket/key`."""
    assert uri.startswith("s3://"), uri
    return data_dir / "objects" / uri[len("s3://") :]


def wait_for_object(data_dir: Path, *uris: str, timeout_s: float = 60) -> str:
    """The first of `uris` to appear."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for uri in uris:
            if local_path(data_dir, uri).is_file():
                return uri
        time.sleep(0.05)
    raise AssertionError(f"none of {uris} appeared within {timeout_s} s")
