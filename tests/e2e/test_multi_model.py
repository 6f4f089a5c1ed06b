"""Multi-model endpoints: one endpoint serving the models under a prefix, loaded on
demand into a cache of 5 per instance, least recently used evicted."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.support.endpoints import deploy, wait_for_status
from tests.support.models import iris_rows, model_tarball, put_model_prefix

MODELS = 20
CACHE = 5


@pytest.fixture(scope="module")
def prefix(server) -> str:
    url = put_model_prefix(server.data_dir, "multi", MODELS)
    broken = model_tarball({"model.joblib": b"not a model"})
    (server.data_dir / "objects" / "multi" / "models" / "broken.tar.gz").write_bytes(broken)
    return url


@pytest.fixture(scope="module")
def endpoint(server, sagemaker, prefix: str) -> str:
    return deploy(
        sagemaker,
        prefix,
        environment={"MODELHOST_MAX_LOADED_MODELS": str(CACHE)},
        variants=[("AllTraffic", 2, 1.0)],
        container_fields={"Mode": "MultiModel"},
    )


def _predict(runtime, endpoint: str, target: str) -> list[int]:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        TargetModel=target,
        ContentType="application/json",
        Body=json.dumps(iris_rows(3)),
    )
    return json.loads(answer["Body"].read())


def _samples(server, name: str, endpoint: str) -> dict[str, float]:
    """The per-instance samples of metric `name` for `endpoint`, by instance."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("endpoint") == endpoint:
                found[sample.labels["instance"]] = sample.value
    return found


def test_every_model_answers_with_its_own_predictions(server, runtime, endpoint: str) -> None:
    for round_ in range(2):
        for index in range(MODELS):
            expected = [100 * index, 100 * index + 1, 100 * index + 2]
            assert _predict(runtime, endpoint, f"model-{index}.tar.gz") == expected, round_
    loaded = _samples(server, "modelhost_loaded_model_count", endpoint)
    assert len(loaded) == 2 and all(0 < count <= CACHE for count in loaded.values())
    # 20 models through two caches of 5, twice over: models were unloaded for others.
    unloads = _samples(server, "modelhost_model_unloads_total", endpoint)
    assert sum(unloads.values()) >= MODELS - 2 * CACHE
    loads = _samples(server, "modelhost_model_loading_time_seconds_count", endpoint)
    assert sum(loads.values()) >= MODELS + 1


def test_a_loaded_model_is_a_cache_hit_on_the_instance_that_has_it(
    server, runtime, endpoint: str
) -> None:
    _predict(runtime, endpoint, "model-3.tar.gz")
    hits = sum(_samples(server, "modelhost_model_cache_hit_total", endpoint).values())
    loads = sum(_samples(server, "modelhost_model_loading_time_seconds_count", endpoint).values())
    for _ in range(10):
        assert _predict(runtime, endpoint, "model-3.tar.gz") == [300, 301, 302]
    after = sum(_samples(server, "modelhost_model_cache_hit_total", endpoint).values())
    assert after - hits == 10  # each one served by an instance that had it loaded
    assert (
        sum(_samples(server, "modelhost_model_loading_time_seconds_count", endpoint).values())
        == loads
    )
    lookups = _samples(server, "modelhost_model_cache_lookups_total", endpoint)
    assert sum(lookups.values()) >= after


@pytest.mark.parametrize(
    "target",
    ["../iris/model.tar.gz", "/etc/passwd", "a/../../b.tar.gz", "./model-1.tar.gz", "a//b"],
)
def test_a_target_model_outside_the_prefix_is_a_validation_error(
    runtime, endpoint: str, target: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        _predict(runtime, endpoint, target)
    assert excinfo.value.response["Error"]["Code"] == "ValidationError"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_missing_model_is_a_validation_error_naming_it(runtime, endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        _predict(runtime, endpoint, "model-99.tar.gz")
    assert excinfo.value.response["Error"]["Code"] == "ValidationError"
    assert "model-99.tar.gz" in excinfo.value.response["Error"]["Message"]


def test_a_model_that_fails_to_load_is_a_model_error_naming_it(runtime, endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        _predict(runtime, endpoint, "broken.tar.gz")
    assert excinfo.value.response["Error"]["Code"] == "ModelError"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "broken.tar.gz" in excinfo.value.response["Error"]["Message"]
    # The others still answer.
    assert _predict(runtime, endpoint, "model-7.tar.gz") == [700, 701, 702]


def test_a_request_without_target_model_is_a_validation_error(runtime, endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=endpoint, ContentType="application/json", Body=json.dumps(iris_rows(1))
        )
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "missing a target model header" in error["Message"]


def test_response_streaming_on_a_multi_model_endpoint_is_refused(runtime, endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_with_response_stream(
            EndpointName=endpoint, ContentType="application/json", Body=json.dumps(iris_rows(1))
        )
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "multi-model endpoint" in error["Message"]


def test_an_asynchronous_multi_model_endpoint_fails_saying_why(sagemaker, prefix: str) -> None:
    name = deploy(
        sagemaker,
        prefix,
        container_fields={"Mode": "MultiModel"},
        async_config={"OutputConfig": {"S3OutputPath": "s3://multi/out/"}},
        wait=False,
    )
    status = wait_for_status(sagemaker, name, {"InService", "Failed"})
    assert status["EndpointStatus"] == "Failed"
    assert "Mode=MultiModel" in status["FailureReason"]


def test_batch_transform_refuses_a_multi_model_model(sagemaker, endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_transform_job(
            TransformJobName=f"{endpoint}-job",
            ModelName=endpoint,  # deploy() names the model after the endpoint
            TransformInput={
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://multi/in/"}
                }
            },
            TransformOutput={"S3OutputPath": "s3://multi/out/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "MultiModel" in excinfo.value.response["Error"]["Message"]


def test_target_model_on_a_single_model_endpoint_is_refused(
    runtime, sagemaker, iris_model_url: str
) -> None:
    single = deploy(sagemaker, iris_model_url)
    with pytest.raises(ClientError) as excinfo:
        _predict(runtime, single, "model-1.tar.gz")
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "is not a multi-model endpoint" in error["Message"]


def test_a_multi_model_container_needs_a_prefix(sagemaker) -> None:
    for container in (
        {"Image": "modelhost/sklearn", "Mode": "MultiModel"},
        {"Image": "modelhost/sklearn", "Mode": "MultiModel", "ModelDataUrl": "s3://b/m.tar.gz"},
    ):
        with pytest.raises(ClientError) as excinfo:
            sagemaker.create_model(
                ModelName="mme-bad",
                PrimaryContainer=container,
                ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
            )
        assert excinfo.value.response["Error"]["Code"] == "ValidationException"
