"""Endpoints end to end: create, invoke, update, scale, delete, with boto3 and waiters."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import iris_classifier, iris_model_bytes, iris_rows, put_model


def _csv(rows: list[list[float]]) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in rows)


def test_invoke_with_csv_and_json(sagemaker, runtime, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url)
    rows = iris_rows(3)
    expected = iris_classifier().predict(rows).tolist()

    response = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="text/csv", Body=_csv(rows)
    )
    assert response["ContentType"].startswith("text/csv")
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert [int(float(x)) for x in response["Body"].read().decode().split()] == expected

    response = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(rows),
    )
    assert response["ContentType"].startswith("application/json")
    assert json.loads(response["Body"].read()) == expected

    described = sagemaker.describe_endpoint(EndpointName=name)
    variant = described["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == variant["DesiredInstanceCount"] == 1
    assert described["EndpointConfigName"] == name
    listed = sagemaker.list_endpoints(NameContains=name, StatusEquals="InService")
    assert [e["EndpointName"] for e in listed["Endpoints"]] == [name]

    sagemaker.delete_endpoint(EndpointName=name)
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="1,2,3,4")
    assert excinfo.value.response["Error"]["Code"] == "ValidationError"


def test_waiter_and_custom_attributes(sagemaker, runtime, tmp_path, server) -> None:
    code = b"""
import json, joblib, os
def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
def input_fn(body, content_type, context=None):
    attrs = context.custom_attributes if context is not None else ""
    return json.loads(body), attrs
def predict_fn(data, model):
    rows, attrs = data
    return {"labels": model.predict(rows).tolist(), "attrs": attrs}
def output_fn(prediction, accept, context=None):
    context.response_custom_attributes = "echo=" + prediction["attrs"]
    return json.dumps(prediction)
"""
    url = put_model(
        server.data_dir, "attrs", {"model.joblib": iris_model_bytes(), "code/inference.py": code}
    )
    name = deploy(sagemaker, url, image="modelhost/python", wait=False)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    response = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="application/json",
        Body=json.dumps(iris_rows(2)),
        CustomAttributes="trace=abc",
    )
    answer = json.loads(response["Body"].read())
    assert answer["attrs"] == "trace=abc"
    assert response["CustomAttributes"] == "echo=trace=abc"
    assert answer["labels"] == iris_classifier().predict(iris_rows(2)).tolist()


def test_weighted_variants_and_target_variant(sagemaker, runtime, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url, variants=[("A", 1, 3.0), ("B", 1, 1.0)])
    seen = Counter(
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1)))[
            "InvokedProductionVariant"
        ]
        for _ in range(200)
    )
    assert set(seen) == {"A", "B"}
    assert 0.6 < seen["A"] / 200 < 0.9  # 75% expected
    for _ in range(5):
        response = runtime.invoke_endpoint(
            EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1)), TargetVariant="B"
        )
        assert response["InvokedProductionVariant"] == "B"
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1)), TargetVariant="C"
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationError"

    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "A", "DesiredWeight": 0.0},
            {"VariantName": "B", "DesiredInstanceCount": 2},
        ],
    )
    described = wait_for_status(sagemaker, name, {"InService"})
    variants = {v["VariantName"]: v for v in described["ProductionVariants"]}
    assert variants["B"]["CurrentInstanceCount"] == 2
    assert variants["A"]["CurrentWeight"] == 0.0
    seen = Counter(
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1)))[
            "InvokedProductionVariant"
        ]
        for _ in range(30)
    )
    assert seen == {"B": 30}
    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "Z", "DesiredWeight": 1.0}],
        )
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"


def test_update_endpoint_keeps_serving(sagemaker, runtime, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url)
    model = sagemaker.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0][
        "ModelName"
    ]
    new_config = unique("cfg2")
    sagemaker.create_endpoint_config(
        EndpointConfigName=new_config,
        ProductionVariants=[
            {
                "VariantName": "Blue",
                "ModelName": model,
                "InstanceType": "ml.c5.large",
                "InitialInstanceCount": 2,
            }
        ],
    )
    failures: list[Exception] = []
    variants: Counter[str] = Counter()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1))
                )
                variants[response["InvokedProductionVariant"]] += 1
            except Exception as exc:
                failures.append(exc)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.3)
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=new_config)
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
        with pytest.raises(ClientError):
            sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=new_config)
        described = wait_for_status(sagemaker, name, {"InService"})
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert variants["AllTraffic"] > 0 and variants["Blue"] > 0
    assert described["EndpointConfigName"] == new_config
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Blue"]
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2


def test_endpoint_errors(sagemaker) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=unique("ep"), EndpointConfigName="missing-cfg")
    assert "Could not find endpoint configuration" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        sagemaker.describe_endpoint(EndpointName="missing-endpoint")
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        sagemaker.delete_endpoint(EndpointName="missing-endpoint")
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"


def test_failed_update_rolls_back_to_the_serving_config(
    sagemaker, runtime, iris_model_url: str
) -> None:
    name = deploy(sagemaker, iris_model_url)
    broken = unique("broken")
    sagemaker.create_model(
        ModelName=broken,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": "s3://models/nowhere/model.tar.gz",
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=broken,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": broken,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=broken)
    described = wait_for_status(sagemaker, name, {"InService"})
    assert described["EndpointConfigName"] == name
    assert described["FailureReason"].startswith("Update failed:")
    assert "s3://models/nowhere/model.tar.gz" in described["FailureReason"]
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1))
    )
    assert answer["Body"].read().strip() in (b"0", b"0.0")
    # the endpoint can be updated again afterwards
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_for_status(sagemaker, name, {"InService"}).get("FailureReason") is None


def test_instance_quota_refuses_runaway_counts(sagemaker, iris_model_url: str) -> None:
    model = sagemaker.describe_endpoint_config(
        EndpointConfigName=deploy(sagemaker, iris_model_url)
    )["ProductionVariants"][0]["ModelName"]
    config = unique("huge")
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1000,
            }
        ],
    )
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=unique("huge"), EndpointConfigName=config)
    assert excinfo.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert "MODELHOST_MAX_INSTANCES" in excinfo.value.response["Error"]["Message"]


def test_delete_while_creating_leaves_nothing_running(
    server, sagemaker, iris_model_url: str
) -> None:
    from tests.support.processes import instance_pids

    name = deploy(sagemaker, iris_model_url, variants=[("AllTraffic", 2, 1.0)], wait=False)
    sagemaker.delete_endpoint(EndpointName=name)
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    deadline = time.monotonic() + 10
    while instance_pids(server.process.pid, name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert instance_pids(server.process.pid, name) == []


def test_a_variant_gives_its_model_longer_to_start(tmp_path) -> None:
    """ContainerStartupHealthCheckTimeoutInSeconds: on a server whose instances get 2 s to
    answer /ping, a model that takes 4 s to load fails the endpoint, unless its variant
    allows longer."""
    from tests.support.server import running_server

    code = (
        b"import time\ndef model_fn(model_dir):\n    time.sleep(4)\n    return None\n"
        b"def transform_fn(model, body, content_type, accept):\n    return 'ok', 'text/plain'\n"
    )
    with running_server(tmp_path / "data", env={"MODELHOST_STARTUP_TIMEOUT": "2"}) as server:
        sagemaker = server.client("sagemaker")
        url = put_model(server.data_dir, "slow-start", {"code/inference.py": code})
        name = deploy(sagemaker, url, image="modelhost/python", wait=False)
        status = wait_for_status(sagemaker, name, {"InService", "Failed"})
        assert status["EndpointStatus"] == "Failed"
        assert "did not answer /ping within 2 s" in status["FailureReason"]
        patient = deploy(
            sagemaker,
            url,
            image="modelhost/python",
            variant_fields={"ContainerStartupHealthCheckTimeoutInSeconds": 60},
        )
        answer = server.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=patient, ContentType="text/plain", Body=b"x"
        )
        assert answer["Body"].read() == b"ok"
