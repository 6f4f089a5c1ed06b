"""ModelDataUrl on a real S3 endpoint (a moto server), configured the way AWS tools
expect: the server only gets AWS_ENDPOINT_URL_S3 in its environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.endpoints import deploy, wait_for_status
from tests.support.models import iris_classifier, iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import MotoServer, moto_server
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_backed_server(s3: MotoServer, tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("s3server") / "data", env={"AWS_ENDPOINT_URL_S3": s3.endpoint_url}
    ).start()
    yield server
    server.stop()


def _predict(server: ServerProcess, name: str) -> list[int]:
    runtime = server.client("sagemaker-runtime")
    body = "\n".join(",".join(map(str, row)) for row in iris_rows(3))
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="text/csv", Body=body
    )
    return [int(float(x)) for x in answer["Body"].read().decode().split()]


def test_model_tarball_from_s3(s3: MotoServer, s3_backed_server: ServerProcess) -> None:
    bucket = s3.create_bucket("models")
    s3.s3_client().put_object(
        Bucket=bucket,
        Key="iris/model.tar.gz",
        Body=model_tarball({"model.joblib": iris_model_bytes()}),
    )
    name = deploy(s3_backed_server.client("sagemaker"), f"s3://{bucket}/iris/model.tar.gz")
    assert _predict(s3_backed_server, name) == iris_classifier().predict(iris_rows(3)).tolist()


def test_uncompressed_prefix_from_s3(s3: MotoServer, s3_backed_server: ServerProcess) -> None:
    bucket = s3.create_bucket("prefix")
    s3.s3_client().put_object(Bucket=bucket, Key="iris/model.joblib", Body=iris_model_bytes())
    sagemaker = s3_backed_server.client("sagemaker")
    sagemaker.create_model(
        ModelName="prefix-model",
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": f"s3://{bucket}/iris/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            },
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="prefix-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "prefix-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="prefix-endpoint", EndpointConfigName="prefix-config")
    wait_for_status(sagemaker, "prefix-endpoint", {"InService"})
    assert _predict(s3_backed_server, "prefix-endpoint") == (
        iris_classifier().predict(iris_rows(3)).tolist()
    )


def test_missing_s3_object_fails_with_reason(
    s3: MotoServer, s3_backed_server: ServerProcess
) -> None:
    bucket = s3.create_bucket("empty")
    sagemaker = s3_backed_server.client("sagemaker")
    name = deploy(sagemaker, f"s3://{bucket}/missing/model.tar.gz", wait=False)
    described = wait_for_status(sagemaker, name, {"Failed", "InService"})
    assert described["EndpointStatus"] == "Failed"
    assert f"s3://{bucket}/missing/model.tar.gz" in described["FailureReason"]
