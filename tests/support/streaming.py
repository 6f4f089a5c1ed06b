"""A tiny "token generator" model for response streaming: it yields the tokens it is
given, one part each, and reports through files what it has produced, so tests can tell
from content (not from timing) that parts travelled while the model was still working."""

from __future__ import annotations

from pathlib import Path

from tests.support.models import put_model

# JSON body: {"tokens": [...], "delay": s, "release": path, "marker": path,
#             "fail_after": k, "gap": s, "closed": path, "async": bool}
# Before its last token it waits (up to 4 s) for the `release` file, then writes `marker`;
# `gap` is an extra pause after the first token; `closed` is written if the generator is
# closed before its end (the client went away). Parts are of the Accept type if that is
# text/*, else text/plain; custom attributes "X" are answered with "echo X".
TOKEN_CODE = b"""
import asyncio, json, os, time

def model_fn(model_dir):
    return None

def _wait_for(path):
    deadline = time.monotonic() + 4
    while path and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)

def _tokens(request):
    tokens = request["tokens"]
    try:
        for i, token in enumerate(tokens):
            if i == request.get("fail_after"):
                raise RuntimeError("the generator broke at token %d" % i)
            if i == len(tokens) - 1:
                _wait_for(request.get("release"))
                if request.get("marker"):
                    open(request["marker"], "w").write("last token produced")
            time.sleep(request.get("delay", 0))
            if i == 1:
                time.sleep(request.get("gap", 0))
            yield token
    except GeneratorExit:
        if request.get("closed"):
            open(request["closed"], "w").write("closed after %d tokens" % i)
        raise

async def _async_tokens(request):
    for token in request["tokens"]:
        await asyncio.sleep(request.get("delay", 0))
        yield token

def transform_fn(model, body, content_type, accept, context):
    request = json.loads(body)
    if context.custom_attributes:
        context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes",
                                    "echo " + context.custom_attributes)
    kind = accept if accept.startswith("text/") else "text/plain"
    if request.get("async"):
        return _async_tokens(request), kind
    return _tokens(request), kind
"""


def put_token_model(data_dir: Path) -> str:
    return put_model(data_dir, "tokens", {"code/inference.py": TOKEN_CODE})
