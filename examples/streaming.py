"""Streaming responses: a handler that yields its answer word by word, deployed and read
part by part with InvokeEndpointWithResponseStream.

    python examples/streaming.py      # against MODELHOST_URL (default http://127.0.0.1:8765)
"""

from __future__ import annotations

import json

from _common import client, deploy, put, remove, tarball

HANDLER = b"""
import json
import time


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    for word in json.loads(body)["prompt"].split():
        time.sleep(0.05)  # the time a real model takes per token
        yield word + " "
"""


def main() -> None:
    name = "example-streaming"
    url = put("s3://examples/streaming/model.tar.gz", tarball({"code/inference.py": HANDLER}))
    deploy(name, url, "modelhost/python")
    try:
        response = client("sagemaker-runtime").invoke_endpoint_with_response_stream(
            EndpointName=name,
            ContentType="application/json",
            Body=json.dumps({"prompt": "streamed one word at a time"}),
        )
        parts = []
        for event in response["Body"]:
            part = event["PayloadPart"]["Bytes"].decode()
            parts.append(part)
            print(part, end="", flush=True)
        print(f"\n{len(parts)} parts")
    finally:
        remove(name)


if __name__ == "__main__":
    main()
