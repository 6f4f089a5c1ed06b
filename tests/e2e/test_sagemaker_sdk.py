"""The official sagemaker SDK, unchanged, against a bare server: only AWS_ENDPOINT_URL
(plus any key and a region) and the SDK's config file point it at modelhost. Artifacts
and code go up through the server's own S3 API, logs come back through its CloudWatch
Logs API."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import joblib
import pytest

from tests.support.endpoints import unique
from tests.support.models import iris_classifier, iris_rows, model_tarball
from tests.support.sagemaker_sdk import run_sdk, sdk_installed
from tests.support.server import ServerProcess

pytestmark = pytest.mark.skipif(not sdk_installed(), reason="the sagemaker SDK is not installed")

_PRELUDE = """
import json, sys
import sagemaker
from sagemaker.predictor import Predictor
from sagemaker.serializers import JSONSerializer, CSVSerializer
from sagemaker.deserializers import JSONDeserializer
session = sagemaker.Session()
bucket = session.default_bucket()
"""

_INFERENCE = b"""
import json, os
import joblib

def model_fn(model_dir):
    print("loading the iris model from", model_dir, flush=True)
    return joblib.load(os.path.join(model_dir, "model.joblib"))

def input_fn(body, content_type):
    return json.loads(body)["rows"]

def predict_fn(rows, model):
    return model.predict(rows).tolist()

def output_fn(prediction, accept):
    return json.dumps({"labels": prediction})
"""


_IMAGE = (
    'image = sagemaker.image_uris.retrieve("sklearn", session.boto_region_name, version="1.2-1")\n'
)
_MODEL = (
    _IMAGE
    + """model = sagemaker.model.Model(image_uri=image, model_data=url, sagemaker_session=session,
                              predictor_cls=Predictor)
"""
)

# The SDK's own wait (Model.deploy with wait=True, test_model_deploy_predict_and_delete)
# sleeps 30 s before its first DescribeEndpoint; the other tests wait as the README shows.
_READY = "session.wait_for_endpoint(predictor.endpoint_name, poll=1)\n"


def _run(server: ServerProcess, files: Path, body: str) -> tuple[Any, str]:
    """`body` after the prelude and the upload of `files`' model.tar.gz to a new bucket (as
    `url`), run by run_sdk; its answer and the bucket."""
    bucket = unique("sdk")
    script = (
        _PRELUDE
        + f"""url = session.upload_data({str(files / "model.tar.gz")!r}, bucket=bucket,
                          key_prefix="iris")
"""
        + body
    )
    return run_sdk(server.url, files / "home", script, bucket), bucket


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """model.tar.gz (the iris model, no code) and a source folder with inference.py."""
    buffer = io.BytesIO()
    joblib.dump(iris_classifier(), buffer)
    (tmp_path / "model.tar.gz").write_bytes(model_tarball({"model.joblib": buffer.getvalue()}))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "inference.py").write_bytes(_INFERENCE)
    (tmp_path / "src" / "helper.txt").write_text("shipped with the code")
    return tmp_path


def test_model_deploy_predict_and_delete(server: ServerProcess, files: Path) -> None:
    run, bucket = _run(
        server,
        files,
        f"""
{_MODEL}predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                         serializer=JSONSerializer(), deserializer=JSONDeserializer())
answer = predictor.predict({iris_rows(3)!r})
name = predictor.endpoint_name
predictor.delete_endpoint()
print()
print("RESULT", json.dumps({{"answer": answer, "url": url, "bucket": bucket, "name": name}}))
""",
    )
    out = run["result"]
    assert out["bucket"] == bucket
    assert out["url"] == f"s3://{bucket}/iris/model.tar.gz"
    assert (server.data_dir / "objects" / bucket / "iris" / "model.tar.gz").exists()
    assert len(out["answer"]) == 3
    endpoints = server.client("sagemaker").list_endpoints(NameContains=out["name"])
    assert endpoints["Endpoints"] == []


@pytest.mark.parametrize("isolated", [False, True], ids=["source-dir", "network-isolation"])
def test_sklearn_model_with_entry_point_and_source_dir(
    server: ServerProcess, files: Path, isolated: bool
) -> None:
    """Without network isolation the SDK uploads sourcedir.tar.gz and names it in
    SAGEMAKER_SUBMIT_DIRECTORY; with it, the SDK repacks the code into model.tar.gz (an
    archive whose first member is named '')."""
    run, bucket = _run(
        server,
        files,
        f"""
from sagemaker.sklearn import SKLearnModel
model = SKLearnModel(model_data=url, entry_point="inference.py",
                     source_dir={str(files / "src")!r}, framework_version="1.2-1",
                     sagemaker_session=session, enable_network_isolation={isolated!r})
predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                         serializer=JSONSerializer(), deserializer=JSONDeserializer(),
                         wait=False)
{_READY}answer = predictor.predict({{"rows": {iris_rows(2)!r}}})
described = session.sagemaker_client.describe_model(ModelName=model.name)
predictor.delete_endpoint()
container = described["PrimaryContainer"]
print()
print("RESULT", json.dumps({{"answer": answer, "env": container.get("Environment"),
                            "data": container["ModelDataUrl"]}}))
""",
    )
    out = run["result"]
    # The user's output_fn answered, with what the model predicts.
    assert out["answer"] == {"labels": iris_classifier().predict(iris_rows(2)).tolist()}
    submitted = out["env"]["SAGEMAKER_SUBMIT_DIRECTORY"]
    if isolated:
        assert submitted == "/opt/ml/model/code"
        assert out["data"] != f"s3://{bucket}/iris/model.tar.gz"  # the repacked one
    else:
        assert submitted.startswith(f"s3://{bucket}/") and submitted.endswith("sourcedir.tar.gz")


def test_serverless_deploy(server: ServerProcess, files: Path) -> None:
    run, _ = _run(
        server,
        files,
        f"""
from sagemaker.serverless import ServerlessInferenceConfig
{_MODEL}config = ServerlessInferenceConfig(memory_size_in_mb=1024, max_concurrency=2)
predictor = model.deploy(serverless_inference_config=config,
                         serializer=JSONSerializer(), deserializer=JSONDeserializer(),
                         wait=False)
{_READY}answer = predictor.predict({iris_rows(2)!r})
predictor.delete_endpoint()
print()
print("RESULT", json.dumps({{"answer": answer}}))
""",
    )
    out = run["result"]
    assert len(out["answer"]) == 2


def test_predict_async_without_a_content_type(server: ServerProcess, files: Path) -> None:
    """predict_async uploads the input with its serializer's Content-Type and sends no
    ContentType: the model gets the object's (CSV here, which is not the JSON a missing
    type would be taken for)."""
    run, bucket = _run(
        server,
        files,
        f"""
from sagemaker.async_inference import AsyncInferenceConfig
from sagemaker.async_inference.waiter_config import WaiterConfig
{_MODEL}predictor = model.deploy(
    initial_instance_count=1, instance_type="ml.m5.large",
    async_inference_config=AsyncInferenceConfig(output_path=f"s3://{{bucket}}/async-out"),
    serializer=CSVSerializer(), deserializer=JSONDeserializer(), wait=False)
{_READY}response = predictor.predict_async(data={iris_rows(3)!r})
# get_result's waiter for the failure object runs on, in a thread the script's exit
# waits for, until its attempts are spent: few attempts, a short exit.
answer = response.get_result(WaiterConfig(max_attempts=20, delay=1))
predictor.delete_endpoint()
print()
print("RESULT", json.dumps({{"answer": answer, "output": response.output_path}}))
""",
    )
    out = run["result"]
    assert out["answer"] == iris_classifier().predict(iris_rows(3)).tolist()
    assert out["output"].startswith(f"s3://{bucket}/async-out/")


def test_transformer_with_logs(server: ServerProcess, files: Path) -> None:
    """`transformer.wait(logs=True)` prints the job's instance log, read back through
    CloudWatch Logs' API, and the output is read back through S3."""
    rows = "\\n".join(",".join(str(v) for v in row) for row in iris_rows(4))
    run, _ = _run(
        server,
        files,
        f"""
from sagemaker.sklearn import SKLearnModel
{_IMAGE}model = sagemaker.model.Model(image_uri=image, model_data=url, sagemaker_session=session)
data = session.upload_string_as_file_body("{rows}\\n", bucket=bucket, key="batch/in/rows.csv")
transformer = model.transformer(instance_count=1, instance_type="ml.m5.large",
                                output_path=f"s3://{{bucket}}/batch/out", accept="text/csv")
transformer.transform(f"s3://{{bucket}}/batch/in/", content_type="text/csv", split_type="Line",
                      wait=False)
transformer.wait(logs=True)
output = session.read_s3_file(bucket, "batch/out/rows.csv.out")
print()
print("RESULT", json.dumps({{"output": output, "job": transformer.latest_transform_job.name}}))
""",
    )
    out = run["result"]
    assert len(out["output"].strip().splitlines()) == 4
    # The instance's own log lines, as the SDK printed them from CloudWatch Logs: each
    # once, though the SDK polled the stream several times.
    printed = run["stdout"].splitlines()
    assert len([line for line in printed if "model loaded in" in line]) == 1, run["stdout"]
    assert len([line for line in printed if "starting model server" in line]) == 1


_STREAMING = b"""
import json

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept, context):
    def tokens():
        yield from json.loads(body)["tokens"]
    return tokens(), "text/plain"
"""


def test_predict_stream(server: ServerProcess, tmp_path: Path) -> None:
    """Predictor.predict_stream reads InvokeEndpointWithResponseStream's event stream: the
    parts the model yields, one event each."""
    (tmp_path / "model.tar.gz").write_bytes(model_tarball({"code/inference.py": _STREAMING}))
    tokens = ["Once", " upon", " a", " time"]
    run, _ = _run(
        server,
        tmp_path,
        f"""
model = sagemaker.model.Model(image_uri="modelhost/python", model_data=url,
                              sagemaker_session=session, predictor_cls=Predictor)
predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", wait=False)
{_READY}body = json.dumps({{"tokens": {tokens!r}}})
parts = [part.decode() for part in predictor.predict_stream(
    body, initial_args={{"ContentType": "application/json"}})]
predictor.delete_endpoint()
print()
print("RESULT", json.dumps({{"parts": parts}}))
""",
    )
    assert "".join(run["result"]["parts"]) == "".join(tokens)
    assert len(run["result"]["parts"]) >= 2  # streamed, not one whole answer


def test_right_size(server: ServerProcess, files: Path) -> None:
    """Model.right_size creates the model and an inference recommendations job, waits for
    it and keeps its recommendations; the sample payloads come from an archive uploaded
    through the S3 API."""
    rows = "\\n".join(",".join(str(v) for v in row) for row in iris_rows(2))
    run, _ = _run(
        server,
        files,
        f"""
import io, tarfile
from sagemaker.inference_recommender import ModelLatencyThreshold, Phase
# The SDK polls the job every 120 s by default; a second keeps the test short.
sagemaker.Session.wait_for_inference_recommendations_job.__defaults__ = (1, "Verbose")
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
    data = "{rows}\\n".encode()
    info = tarfile.TarInfo("rows.csv")
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
session.boto_session.client("s3", endpoint_url=None).put_object(
    Bucket=bucket, Key="payloads/payload.tar.gz", Body=buffer.getvalue())
{_MODEL}model.right_size(
    sample_payload_url=f"s3://{{bucket}}/payloads/payload.tar.gz",
    supported_content_types=["text/csv"], supported_instance_types=["ml.c5.large"],
    framework="SKLEARN", phases=[Phase(duration_in_seconds=1, initial_number_of_users=1,
                                       spawn_rate=0)],
    model_latency_thresholds=[ModelLatencyThreshold(percentile="P95",
                                                    value_in_milliseconds=2000)],
    log_level="Quiet")
print()
print("RESULT", json.dumps({{"recommendations": model.inference_recommendations,
                            "model": model.name}}, default=str))
""",
    )
    out = run["result"]
    assert out["recommendations"], run["stdout"]
    configuration = out["recommendations"][0]["EndpointConfiguration"]
    assert configuration["InstanceType"] == "ml.c5.large"
    server.client("sagemaker").describe_model(ModelName=out["model"])
