"""A transform job survives its server being killed: the restarted server resumes it from
the last committed part, and every record's output appears exactly once, in order, and
so does its capture (each object listed once, each record's inference id kept)."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.request

from tests.support.models import model_tarball
from tests.support.server import ServerProcess

# Echoes each record's first column, slowly enough that the job is still running when
# the server is killed.
_ECHO = textwrap.dedent("""
    import os
    import time

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        time.sleep(0.3)
        ids = [line.split(",")[0] for line in body.splitlines()]
        with open(os.environ["CALLS_LOG"], "a") as log:
            log.write(ids[0] + "\\n")
        return "".join(i + "\\n" for i in ids)
""").encode()

_ROWS = 60_000  # about 1 MB: several 1 MB mini-batches over the two objects


def _progress(server: ServerProcess, name: str) -> dict:
    request = urllib.request.Request(
        server.url + "/",
        data=json.dumps({"TransformJobName": name}).encode(),
        headers={
            "X-Amz-Target": "SageMaker.DescribeTransformJob",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_killed_server_resumes_job_without_duplicates(tmp_path) -> None:
    data = tmp_path / "data"
    objects = data / "objects"
    (objects / "models" / "echo").mkdir(parents=True)
    (objects / "models" / "echo" / "model.tar.gz").write_bytes(
        model_tarball({"code/inference.py": _ECHO})
    )
    inputs = {}
    for part in ("a", "b"):
        text = "".join(f"{part}{i},5.1,3.5,1.4,0.2\n" for i in range(_ROWS))
        inputs[part] = text
        (objects / "in" / f"{part}.csv").parent.mkdir(parents=True, exist_ok=True)
        (objects / "in" / f"{part}.csv").write_text(text)
    env = {"MODELHOST_TRANSFORM_PART_BYTES": "1"}  # every mini-batch is its own part
    calls = tmp_path / "calls.log"  # the first record of every batch the model saw
    first = ServerProcess(data, env=env).start()
    name = "resumed"
    try:
        sagemaker = first.client("sagemaker")
        sagemaker.create_model(
            ModelName="echo",
            PrimaryContainer={
                "Image": "modelhost/python",
                "ModelDataUrl": "s3://models/echo/model.tar.gz",
            },
        )
        sagemaker.create_transform_job(
            TransformJobName=name,
            ModelName="echo",
            MaxPayloadInMB=1,
            BatchStrategy="MultiRecord",
            MaxConcurrentTransforms=1,
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://in/"}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            TransformOutput={
                "S3OutputPath": "s3://out/",
                "AssembleWith": "Line",
                "Accept": "text/csv",
            },
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
            Environment={"CALLS_LOG": str(calls)},
            DataCaptureConfig={"DestinationS3Uri": "s3://capture/", "GenerateInferenceId": True},
        )
        deadline = time.monotonic() + 60
        while True:
            progress = _progress(first, name).get("TransformProgress", {})
            if progress.get("RecordsProcessed", 0) > 0:
                break
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.05)
        first.kill()
    finally:
        first.kill()
    assert progress["ObjectsCompleted"] < 2, "the job finished before the kill"

    second = ServerProcess(data, env=env).start()
    try:
        sagemaker = second.client("sagemaker")
        sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        job = sagemaker.describe_transform_job(TransformJobName=name)
        assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
        ids = []
        for part, text in inputs.items():
            output = [
                line.split(",")
                for line in (objects / "out" / f"{part}.csv.out").read_text().splitlines()
            ]
            expected = [line.split(",")[0] for line in text.splitlines()]
            assert [line[0] for line in output] == expected
            ids += [line[1] for line in output]
        assert len(set(ids)) == len(ids) == 2 * _ROWS
        for direction, suffix in (("input", ""), ("output", ".out")):
            manifests = [
                json.loads(path.read_text())
                for path in (objects / "capture" / direction).rglob("*")
                if path.is_file()
            ]
            assert sorted(key for m in manifests for key in m[1:]) == [
                f"a.csv{suffix}",
                f"b.csv{suffix}",
            ]
        # committed batches are not sent again; only the one in flight at the kill may be
        sent = calls.read_text().split()
        batches = len(set(sent))
        assert len(sent) <= batches + 1, sent
        assert sent.count("a0") == 1, sent  # committed before the kill (one instance: a first)
        final = _progress(second, name)["TransformProgress"]
        assert final["RecordsProcessed"] == 2 * _ROWS
        assert not (data / "transform" / name).exists()
    finally:
        second.stop()
