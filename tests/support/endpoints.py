"""Endpoints on a test server: unique names, deploy, and polling until a status.

`deployed` lists every endpoint a test made, so the autouse fixture in conftest deletes
them when the test ends; a helper that creates an endpoint some other way appends to it.
"""

from __future__ import annotations

import time
import uuid

deployed: list[tuple[object, str]] = []


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(describe, key: str, wanted: set[str], what: str, timeout_s: float = 90) -> dict:
    """Poll `describe()` until its `key` is one of `wanted`; the last description."""
    deadline = time.monotonic() + timeout_s
    while True:
        description = describe()
        if description[key] in wanted:
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} stuck in {description[key]}")
        time.sleep(0.2)


def wait_for_status(sagemaker, name: str, wanted: set[str], timeout_s: float = 90) -> dict:
    return wait_for(lambda: sagemaker.describe_endpoint(EndpointName=name), "EndpointStatus",
                    wanted, f"endpoint {name}", timeout_s)


def deploy(
    sagemaker,
    model_url: str,
    *,
    image: str = "modelhost/sklearn",
    environment: dict[str, str] | None = None,
    variants: list[tuple[str, int, float]] | None = None,
    wait: bool = True,
) -> str:
    """Model -> EndpointConfig -> Endpoint; returns the endpoint name."""
    name = unique("ep")
    container = {"Image": image, "ModelDataUrl": model_url}
    if environment:
        container["Environment"] = environment
    sagemaker.create_model(ModelName=name, PrimaryContainer=container,
                           ExecutionRoleArn="arn:aws:iam::000000000000:role/any")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": variant, "ModelName": name, "InstanceType": "ml.m5.large",
             "InitialInstanceCount": count, "InitialVariantWeight": weight}
            for variant, count, weight in (variants or [("AllTraffic", 1, 1.0)])
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    if wait:
        wait_for_status(sagemaker, name, {"InService"})
    return name
