"""modelhost quickstart: serve a scikit-learn model through the SageMaker API.

Starts a modelhost server on embedded defaults (SQLite state, local object store, process
instances), trains an iris classifier, packages it as model.tar.gz, deploys it with plain
boto3 calls, invokes it with CSV and JSON, and prints a snippet to reuse.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelhost",
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
    )
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit("modelhost server failed to start") from None
            time.sleep(0.1)
    raise SystemExit("modelhost server did not answer /ping")


def package_model(data_dir: Path) -> str:
    """Train iris and put model.tar.gz where s3://quickstart/... maps on embedded storage."""
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    target = data_dir / "objects" / "quickstart" / "iris" / "model.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as archive:
        info = tarfile.TarInfo("model.joblib")
        info.size = buffer.getbuffer().nbytes
        buffer.seek(0)
        archive.addfile(info, buffer)
    return "s3://quickstart/iris/model.tar.gz"


def print_snippet(model: Path) -> None:
    """Keep a copy of the model in the default data dir's object store, so the snippet
    runs as is against a server started with the defaults in this folder."""
    kept = Path(".modelhost") / "objects" / "quickstart" / "iris" / "model.tar.gz"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, kept)
    print("""
Your turn. Start a server in this folder:  .venv/bin/modelhost server
then, from Python:

    import boto3
    aws = dict(endpoint_url="http://127.0.0.1:8765", region_name="us-east-1",
               aws_access_key_id="any", aws_secret_access_key="any")  # keys are not checked
    sm = boto3.client("sagemaker", **aws)
    rt = boto3.client("sagemaker-runtime", **aws)
    sm.create_model(ModelName="iris", PrimaryContainer={
        "Image": "modelhost/sklearn", "ModelDataUrl": "s3://quickstart/iris/model.tar.gz"})
    sm.create_endpoint_config(EndpointConfigName="iris", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "iris",
        "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sm.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="iris",
                                              WaiterConfig={"Delay": 1})
    answer = rt.invoke_endpoint(EndpointName="iris", ContentType="text/csv",
                                Body="5.1,3.5,1.4,0.2")
    print(answer["Body"].read())
""")


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "modelhost")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "modelhost")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="modelhost-quickstart-") as tmp:
        data_dir = Path(tmp) / "data"
        print(f"starting modelhost server at {url} (data in {data_dir})")
        server = start_server(data_dir, port)
        try:
            model_url = package_model(data_dir)
            sagemaker = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1")
            runtime = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1")

            sagemaker.create_model(
                ModelName="iris",
                PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": model_url},
                ExecutionRoleArn="arn:aws:iam::000000000000:role/modelhost",
            )
            sagemaker.create_endpoint_config(
                EndpointConfigName="iris",
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": "iris",
                        "InstanceType": "ml.m5.large",
                        "InitialInstanceCount": 1,
                    }
                ],
            )
            sagemaker.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
            started = time.monotonic()
            sagemaker.get_waiter("endpoint_in_service").wait(
                EndpointName="iris", WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            print(f"endpoint iris is InService after {time.monotonic() - started:.1f} s")

            csv_rows = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"
            answer = runtime.invoke_endpoint(
                EndpointName="iris", ContentType="text/csv", Accept="text/csv", Body=csv_rows
            )
            print(
                f"CSV  in  {csv_rows!r}\n     out {answer['Body'].read().decode()!r}"
                f" (variant {answer['InvokedProductionVariant']})"
            )
            json_rows = [[5.9, 3.0, 4.2, 1.5], [4.6, 3.1, 1.5, 0.2]]
            answer = runtime.invoke_endpoint(
                EndpointName="iris",
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(json_rows),
            )
            print(f"JSON in  {json_rows}\n     out {json.loads(answer['Body'].read())}")

            print_snippet(data_dir / "objects" / "quickstart" / "iris" / "model.tar.gz")
            sagemaker.delete_endpoint(EndpointName="iris")
            sagemaker.get_waiter("endpoint_deleted").wait(
                EndpointName="iris", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            print("quickstart finished: endpoint deleted, server stopping")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
