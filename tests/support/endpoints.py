"""Endpoints on a test server: unique names, deploy, and polling until a status.

`deployed` lists every endpoint a test made, so the autouse fixture in conftest deletes
them when the test ends; a helper that creates an endpoint some other way appends to it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

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
    return wait_for(
        lambda: sagemaker.describe_endpoint(EndpointName=name),
        "EndpointStatus",
        wanted,
        f"endpoint {name}",
        timeout_s,
    )


def deploy(
    sagemaker,
    model_url: str,
    *,
    image: str = "modelhost/sklearn",
    environment: dict[str, str] | None = None,
    variants: list[tuple[str, int, float]] | None = None,
    instance_type: str = "ml.m5.large",
    async_config: dict | None = None,
    variant_fields: dict | None = None,
    container_fields: dict | None = None,
    wait: bool = True,
    timeout_s: float = 90,
) -> str:
    """Model -> EndpointConfig (with `async_config` as its AsyncInferenceConfig and
    `variant_fields` in every variant, `container_fields` in the container) -> Endpoint;
    returns the endpoint name. With
    `wait`, fails at once if it ends Failed."""
    name = unique("ep")
    container = {"Image": image, "ModelDataUrl": model_url, **(container_fields or {})}
    if environment:
        container["Environment"] = environment
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer=container,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": name,
                "InstanceType": instance_type,
                "InitialInstanceCount": count,
                "InitialVariantWeight": weight,
                **(variant_fields or {}),
            }
            for variant, count, weight in (variants or [("AllTraffic", 1, 1.0)])
        ],
        **({"AsyncInferenceConfig": async_config} if async_config else {}),
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    if wait:
        status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s)
        if status["EndpointStatus"] == "Failed":
            raise AssertionError(f"endpoint {name} failed: {status.get('FailureReason')}")
    return name


def deploy_containers(
    sagemaker,
    containers: list[dict],
    *,
    mode: str | None = None,
    serverless: dict | None = None,
    wait: bool = True,
    timeout_s: float = 120,
) -> str:
    """A multi-container model (`Containers`, with `mode` as its
    InferenceExecutionConfig.Mode) on one ml.m5.large instance, or serverless with
    `serverless` as its ServerlessConfig; as `deploy` otherwise."""
    name = unique("pipe")
    sagemaker.create_model(
        ModelName=name,
        Containers=containers,
        **({"InferenceExecutionConfig": {"Mode": mode}} if mode else {}),
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                **(
                    {"ServerlessConfig": serverless}
                    if serverless
                    else {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
                ),
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    if wait:
        status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s)
        if status["EndpointStatus"] == "Failed":
            raise AssertionError(f"endpoint {name} failed: {status.get('FailureReason')}")
    return name


def undeploy(sagemaker, name: str, timeout_s: float = 60) -> None:
    """Delete an endpoint, wait until it is gone, then its config and model; best effort,
    since it runs during cleanup."""
    from botocore.exceptions import ClientError

    with contextlib.suppress(ClientError):
        sagemaker.delete_endpoint(EndpointName=name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sagemaker.describe_endpoint(EndpointName=name)  # raises once it is gone
            time.sleep(0.2)
    with contextlib.suppress(ClientError):
        sagemaker.delete_endpoint_config(EndpointConfigName=name)
    with contextlib.suppress(ClientError):
        sagemaker.delete_model(ModelName=name)


def deploy_serverless(
    sagemaker,
    model_url: str,
    *,
    max_concurrency: int,
    image: str = "modelhost/sklearn",
    memory_mb: int = 2048,
    timeout_s: float = 90,
) -> str:
    """One serverless AllTraffic variant (a ServerlessConfig of `memory_mb` and
    `max_concurrency`), InService; returns the endpoint name."""
    name = unique("sl")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": model_url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    config = {"MemorySizeInMB": memory_mb, "MaxConcurrency": max_concurrency}
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": config}
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s)
    if status["EndpointStatus"] == "Failed":
        raise AssertionError(f"endpoint {name} failed: {status.get('FailureReason')}")
    return name


@contextlib.contextmanager
def held_invocations(runtime, endpoint: str, count: int, gate) -> Iterator[None]:
    """`count` invocations of a gated model (tests.support.models.put_gated_model) sent at
    once from threads and held in flight until the block ends, when the gate (a Path)
    opens; each must then have been answered "done"."""
    answers: list[object] = []

    def call() -> None:
        try:
            answer = runtime.invoke_endpoint(
                EndpointName=endpoint, ContentType="text/csv", Body="1"
            )
            answers.append(answer["Body"].read())
        except Exception as exc:  # reported below, with the others
            answers.append(exc)

    threads = [threading.Thread(target=call, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        gate.touch()
        for thread in threads:
            thread.join(60)
    assert answers == [b"done"] * count, answers
