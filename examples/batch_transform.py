"""Batch transform: a job scores every record of the objects under a prefix and writes
`<object>.out` beside the output path; no endpoint stays behind.

    python examples/batch_transform.py   # against MODELHOST_URL
"""

from __future__ import annotations

import time

from _common import ROLE, client, get, iris_joblib, put, tarball


def main() -> None:
    sm = client("sagemaker")
    url = put("s3://examples/batch/model.tar.gz", tarball({"model.joblib": iris_joblib()}))
    sm.create_model(
        ModelName="example-batch",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": url},
    )
    put("s3://examples/batch/in/part-0.csv", b"5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n")
    put("s3://examples/batch/in/part-1.csv", b"7.7,3.0,6.1,2.3\n")
    job = f"example-batch-{int(time.time())}"
    try:
        sm.create_transform_job(
            TransformJobName=job,
            ModelName="example-batch",
            BatchStrategy="MultiRecord",
            TransformInput={
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://examples/batch/in/"}
                },
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            TransformOutput={"S3OutputPath": "s3://examples/batch/out/", "AssembleWith": "Line"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=job, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        status = sm.describe_transform_job(TransformJobName=job)
        if status["TransformJobStatus"] != "Completed":
            raise SystemExit(f"{job}: {status['TransformJobStatus']} {status.get('FailureReason')}")
        for part in ("part-0.csv", "part-1.csv"):
            output = get(f"s3://examples/batch/out/{part}.out") or b""
            print(part, "->", output.decode().split())
    finally:
        sm.delete_model(ModelName="example-batch")


if __name__ == "__main__":
    main()
