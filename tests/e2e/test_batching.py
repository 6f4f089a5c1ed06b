"""Adaptive batching end to end: models whose container Environment turns batching on,
deployed on the session server and invoked with boto3 from several threads at once.

Which requests share a model call is decided by the model holding its first call until
the test opens a gate (a file), never by timing: with two worker threads and a delay that
would hang the test, the next requests go to the model only once a batch is full."""

from __future__ import annotations

import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.support.async_inference import deploy_async, local_path, wait_for_object
from tests.support.endpoints import deploy, deployed, unique, wait_for_status
from tests.support.models import iris_classifier, iris_model_bytes, iris_rows, put_model

# Holds a call that holds the input "hold" until <GATE_DIR>/open exists (it says so in
# <GATE_DIR>/entered first); refuses "bad"; answers each input with the call's batch.
GATE_CODE = b"""
import json, os, time
from pathlib import Path
GATE = Path(os.environ["GATE_DIR"])
def model_fn(model_dir):
    return None
def input_fn(body, content_type):
    return json.loads(body)
def batch_predict_fn(inputs, model):
    if "hold" in inputs:
        (GATE / "entered").touch()
        deadline = time.monotonic() + 120
        while not (GATE / "open").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    if "bad" in inputs:
        raise ValueError("the model refuses: bad")
    return [{"input": x, "batch": len(inputs)} for x in inputs]
def output_fn(prediction, accept):
    return json.dumps(prediction)
"""

# One request at a time only: predict_fn has no batch form.
PREDICT_FN_CODE = b"""
import joblib, os
def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
def predict_fn(data, model):
    return model.predict(data)
"""

BATCHING = {"MODELHOST_MAX_BATCH_SIZE": "8"}


def metric(server, name: str, endpoint: str) -> float:
    """One series of the server's /metrics for the endpoint's AllTraffic variant (0 if none)."""
    labels = f'{{endpoint="{re.escape(endpoint)}",variant="AllTraffic"}}'
    found = re.search(rf"^{name}{labels} (\S+)$", server.metrics_text(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for_file(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


@pytest.fixture
def gate() -> Path:
    """A folder the instance (maybe another user) can write to."""
    path = Path(tempfile.mkdtemp(prefix="gate-", dir="/tmp"))
    path.chmod(0o777)
    return path


def _ask(runtime, name: str, value: str) -> dict:
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps(value)
    )
    return json.loads(answer["Body"].read())


def test_requests_waiting_together_share_one_model_call(server, sagemaker, runtime, gate):
    url = put_model(server.data_dir, unique("gate"), {"code/inference.py": GATE_CODE})
    name = deploy(
        sagemaker,
        url,
        image="modelhost/python",
        environment={
            "GATE_DIR": str(gate),
            "SAGEMAKER_TS_BATCH_SIZE": "4",
            # Long enough to hang the test: a batch goes when it is full, not when it is due.
            "SAGEMAKER_TS_MAX_BATCH_DELAY": "60000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        },
    )
    with ThreadPoolExecutor(8) as pool:
        held = pool.submit(_ask, runtime, name, "hold")
        wait_for_file(gate / "entered")
        together = [pool.submit(_ask, runtime, name, f"r{i}") for i in range(4)]
        # The four went to the model as one call while the first is still held.
        assert [f.result(timeout=60) for f in together] == [
            {"input": f"r{i}", "batch": 4} for i in range(4)
        ]
        assert not held.done()
        (gate / "open").touch()
        assert held.result(timeout=60) == {"input": "hold", "batch": 1}

        # A refused request among them fails alone; the others are answered.
        (gate / "open").unlink()
        (gate / "entered").unlink()
        held = pool.submit(_ask, runtime, name, "hold")
        wait_for_file(gate / "entered")
        values = ["a", "bad", "c", "d"]
        futures = [pool.submit(_ask, runtime, name, v) for v in values]
        answers = {}
        for value, future in zip(values, futures, strict=True):
            try:
                answers[value] = future.result(timeout=60)["input"]
            except ClientError as error:
                answers[value] = error.response["Error"]["Code"]
                assert "the model refuses: bad" in error.response["Error"]["Message"]
        assert answers == {"a": "a", "bad": "ModelError", "c": "c", "d": "d"}
        (gate / "open").touch()
        held.result(timeout=60)
    # Batches of 1, 4, 1 and 4 (a batch's size is reported by its first answer); every
    # answered request reports its wait in the queue.
    assert metric(server, "modelhost_batch_size_count", name) == 4
    assert metric(server, "modelhost_batch_size_sum", name) == 10
    assert metric(server, "modelhost_batch_queue_wait_seconds_count", name) == 9


def test_builtin_sklearn_answers_each_request_its_own_rows(server, sagemaker, runtime):
    name = deploy(
        sagemaker,
        put_model(server.data_dir, unique("iris"), {"model.joblib": iris_model_bytes()}),
        environment=BATCHING,
    )
    base = iris_rows(6)
    # 32 requests of one to three rows, in different orders: each gets its own answer back.
    requests = [[base[(i + j) % 6] for j in range(1 + i % 3)] for i in range(32)]

    def ask(rows: list[list[float]]) -> list[int]:
        answer = runtime.invoke_endpoint(
            EndpointName=name, ContentType="text/csv", Body="\n".join(map(_csv_row, rows))
        )
        return [int(float(line)) for line in answer["Body"].read().decode().split()]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, requests))
    classifier = iris_classifier()
    assert answers == [classifier.predict(np.asarray(rows)).tolist() for rows in requests]
    # However they were grouped, the batches' sizes add up to the requests.
    assert metric(server, "modelhost_batch_size_sum", name) == len(requests)


def _csv_row(row: list[float]) -> str:
    return ",".join(map(str, row))


def test_async_and_serverless_requests_are_batched_too(server, sagemaker, runtime):
    url = put_model(server.data_dir, unique("iris"), {"model.joblib": iris_model_bytes()})
    asynchronous = deploy_async(sagemaker, url, image="modelhost/sklearn", environment=BATCHING)
    row = iris_rows(1)[0]
    key = f"{unique('batched')}.csv"
    path = local_path(server.data_dir, f"s3://async-inputs/{key}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_csv_row(row) + "\n")
    answer = runtime.invoke_endpoint_async(
        EndpointName=asynchronous,
        InputLocation=f"s3://async-inputs/{key}",
        ContentType="text/csv",
    )
    found = wait_for_object(server.data_dir, answer["OutputLocation"], answer["FailureLocation"])
    assert found == answer["OutputLocation"]
    expected = iris_classifier().predict([row]).tolist()
    assert [int(float(v)) for v in local_path(server.data_dir, found).read_text().split()] == (
        expected
    )
    assert metric(server, "modelhost_batch_size_sum", asynchronous) == 1

    serverless = unique("sl")
    sagemaker.create_model(
        ModelName=serverless,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": url,
            "Environment": BATCHING,
        },
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=serverless,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": serverless,
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 8},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=serverless, EndpointConfigName=serverless)
    deployed.append((sagemaker, serverless))
    wait_for_status(sagemaker, serverless, {"InService"})
    with ThreadPoolExecutor(4) as pool:
        bodies = list(
            pool.map(
                lambda _: runtime.invoke_endpoint(
                    EndpointName=serverless, ContentType="text/csv", Body=_csv_row(row)
                )["Body"].read(),
                range(8),
            )
        )
    assert {int(float(b)) for b in bodies} == set(expected)
    assert metric(server, "modelhost_batch_size_sum", serverless) == 8


@pytest.mark.parametrize(
    ("environment", "code", "reason"),
    [
        ({"MODELHOST_MAX_BATCH_SIZE": "lots"}, None, "MODELHOST_MAX_BATCH_SIZE='lots'"),
        ({"SAGEMAKER_TS_MAX_BATCH_DELAY": "-5"}, None, "SAGEMAKER_TS_MAX_BATCH_DELAY='-5'"),
        (BATCHING, PREDICT_FN_CODE, "define batch_predict_fn"),
    ],
)
def test_batching_that_cannot_work_fails_the_endpoint_saying_why(
    server, sagemaker, environment, code, reason
):
    files = {"model.joblib": iris_model_bytes()}
    if code is not None:
        files["code/inference.py"] = code
    name = deploy(
        sagemaker,
        put_model(server.data_dir, unique("iris"), files),
        environment=environment,
        wait=False,
    )
    status = wait_for_status(sagemaker, name, {"InService", "Failed"})
    assert status["EndpointStatus"] == "Failed"
    assert reason in status["FailureReason"]


def test_transform_jobs_send_their_mini_batches_unbatched(server, sagemaker):
    """A model asking for batching without a batch form cannot serve an endpoint (above),
    but a transform job runs it: its instances do not batch its mini-batches again."""
    name = unique("tj-batching")
    url = put_model(
        server.data_dir,
        unique("iris"),
        {"model.joblib": iris_model_bytes(), "code/inference.py": PREDICT_FN_CODE},
    )
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": url,
            "Environment": BATCHING,
        },
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    rows = [iris_rows(6)[i % 6] for i in range(40)]
    source = unique("s3://batching/in")
    data = local_path(server.data_dir, f"{source}/rows.csv")
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(_csv_row(r) + "\n" for r in rows))
    output = unique("s3://batching/out")
    sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=name,
        MaxConcurrentTransforms=4,
        MaxPayloadInMB=1,
        BatchStrategy="MultiRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{source}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": output, "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    job = sagemaker.describe_transform_job(TransformJobName=name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    written = local_path(server.data_dir, f"{output}/rows.csv.out").read_text().split()
    assert [int(float(v)) for v in written] == iris_classifier().predict(rows).tolist()
