"""A transform job whose model, input and output live on a real S3 endpoint (a moto
server): listing, streaming reads of a gzip object and the `.out` upload go through
s3fs."""

from __future__ import annotations

import gzip

from tests.support.models import iris_classifier, iris_model_bytes, iris_rows, model_tarball
from tests.support.moto import moto_server
from tests.support.server import ServerProcess


def test_transform_job_on_s3(tmp_path) -> None:
    with moto_server() as s3:
        server = ServerProcess(
            tmp_path / "data", env={"AWS_ENDPOINT_URL_S3": s3.endpoint_url}
        ).start()
        try:
            bucket = s3.create_bucket("batch")
            client = s3.s3_client()
            client.put_object(
                Bucket=bucket,
                Key="model/model.tar.gz",
                Body=model_tarball({"model.joblib": iris_model_bytes()}),
            )
            rows = iris_rows(6) * 50
            body = "".join(",".join(map(str, r)) + "\n" for r in rows).encode()
            client.put_object(Bucket=bucket, Key="in/2026/rows.csv.gz", Body=gzip.compress(body))
            sagemaker = server.client("sagemaker")
            sagemaker.create_model(
                ModelName="iris-s3",
                PrimaryContainer={
                    "Image": "modelhost/sklearn",
                    "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz",
                },
            )
            sagemaker.create_transform_job(
                TransformJobName="on-s3",
                ModelName="iris-s3",
                TransformInput={
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}
                    },
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                    "CompressionType": "Gzip",
                },
                TransformOutput={"S3OutputPath": f"s3://{bucket}/out", "AssembleWith": "Line"},
                TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
            )
            sagemaker.get_waiter("transform_job_completed_or_stopped").wait(
                TransformJobName="on-s3", WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            job = sagemaker.describe_transform_job(TransformJobName="on-s3")
            assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
            output = client.get_object(Bucket=bucket, Key="out/2026/rows.csv.gz.out")
            assert output["Body"].read().decode().split() == [
                str(v) for v in iris_classifier().predict(rows)
            ]
        finally:
            server.stop()
