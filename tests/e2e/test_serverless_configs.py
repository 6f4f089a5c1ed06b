"""ServerlessConfig in CreateEndpointConfig: what SageMaker accepts and the
ValidationException for what it refuses. The client skips its own parameter validation,
so the out-of-range values reach the server as they would from any other SDK."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.endpoints import unique


@pytest.fixture(scope="module")
def raw_sagemaker(server):
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name="us-east-1",
        config=Config(parameter_validation=False, retries={"max_attempts": 0, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def model(sagemaker, iris_model_url: str) -> str:
    name = unique("slm")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": iris_model_url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    return name


def _serverless(model: str, **config: Any) -> dict[str, Any]:
    return {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5, **config},
    }


def test_serverless_config_round_trips(sagemaker, model: str) -> None:
    name = unique("slc")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[_serverless(model, ProvisionedConcurrency=2)]
    )
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
        "ProvisionedConcurrency": 2,
    }
    assert "InstanceType" not in variant


@pytest.mark.parametrize(
    ("variant", "fragment"),
    [
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1500, "MaxConcurrency": 5}},
            "Value '1500' at 'productionVariants.1.member.serverlessConfig.memorySizeInMB' failed "
            "to satisfy constraint: Member must be one of [1024, 2048, 3072, 4096, 5120, 6144]",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 512, "MaxConcurrency": 5}},
            "ServerlessConfig.MemorySizeInMB, value: 512, valid min value: 1024",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 7168, "MaxConcurrency": 5}},
            "Member must have value less than or equal to 6144",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 0}},
            "ServerlessConfig.MaxConcurrency, value: 0, valid min value: 1",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 201}},
            "Member must have value less than or equal to 200",
        ),
        (
            {
                "ServerlessConfig": {
                    "MemorySizeInMB": 2048,
                    "MaxConcurrency": 5,
                    "ProvisionedConcurrency": 6,
                }
            },
            "ProvisionedConcurrency (6) should be less than or equal to MaxConcurrency (5)",
        ),
        (
            {
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                "InstanceType": "ml.m5.large",
            },
            "InstanceType cannot be specified together with ServerlessConfig",
        ),
        (
            {
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            },
            "InstanceType and InitialInstanceCount cannot be specified together with "
            "ServerlessConfig",
        ),
        ({"ServerlessConfig": {"MemorySizeInMB": 2048}}, "MaxConcurrency"),
    ],
    ids=[
        "memory-step",
        "memory-low",
        "memory-high",
        "concurrency-low",
        "concurrency-high",
        "provisioned-over-max",
        "instance-type",
        "instance-type-and-count",
        "missing-max",
    ],
)
def test_bad_serverless_config_is_a_validation_error(
    raw_sagemaker, model: str, variant: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        raw_sagemaker.create_endpoint_config(
            EndpointConfigName=unique("bad"),
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": model, **variant}],
        )
    error = excinfo.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "ValidationException"
    assert fragment in error["Error"]["Message"]


def test_serverless_endpoint_has_one_variant(sagemaker, model: str) -> None:
    second = {**_serverless(model), "VariantName": "Second"}
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName=unique("bad"), ProductionVariants=[_serverless(model), second]
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "single production variant" in excinfo.value.response["Error"]["Message"]


def test_serverless_endpoint_refuses_data_capture(sagemaker, model: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName=unique("bad"),
            ProductionVariants=[_serverless(model)],
            DataCaptureConfig={
                "InitialSamplingPercentage": 50,
                "DestinationS3Uri": "s3://bucket/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}],
            },
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "data capture" in excinfo.value.response["Error"]["Message"]
