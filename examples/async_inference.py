"""Asynchronous inference: the input is an object in the store, InvokeEndpointAsync
answers at once, and the result appears at OutputLocation.

    python examples/async_inference.py   # against MODELHOST_URL
"""

from __future__ import annotations

from _common import client, deploy, iris_joblib, put, remove, tarball, wait_for_object


def main() -> None:
    name = "example-async"
    url = put("s3://examples/async/model.tar.gz", tarball({"model.joblib": iris_joblib()}))
    deploy(
        name,
        url,
        "modelhost/sklearn",
        AsyncInferenceConfig={
            "OutputConfig": {
                "S3OutputPath": "s3://examples/async/out",
                "S3FailurePath": "s3://examples/async/failed",
            }
        },
    )
    try:
        rows = put("s3://examples/async/in/rows.csv", b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
        answer = client("sagemaker-runtime").invoke_endpoint_async(
            EndpointName=name, InputLocation=rows, ContentType="text/csv"
        )
        print("queued; the result will be at", answer["OutputLocation"])
        result = wait_for_object(answer["OutputLocation"])
        print("predictions:", result.decode().split())
    finally:
        remove(name)


if __name__ == "__main__":
    main()
