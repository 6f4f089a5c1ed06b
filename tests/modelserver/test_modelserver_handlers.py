"""The handler chain in process: arity-based context passing and handler results."""

from __future__ import annotations

import numpy as np
import pytest

from modelhost.modelserver.context import Context
from modelhost.modelserver.frameworks import FRAMEWORKS
from modelhost.modelserver.handlers import Handlers

HEADERS = [(b"x-amzn-sagemaker-custom-attributes", b"a=1")]


def make(**fns) -> Handlers:
    return Handlers(lambda x: x, FRAMEWORKS["python"], "/model", **fns)


def test_context_passed_by_arity():
    seen = {}

    def input_fn(body, content_type, context=None):
        seen["input"] = context.custom_attributes
        return np.asarray([[1.0, 2.0]])

    def predict_fn(data, model, scale=3):  # a defaulted extra that is not "context"
        seen["scale"] = scale
        return data * scale

    handlers = make(input_fn=input_fn, predict_fn=predict_fn)
    assert handlers.needs_context
    body, content_type = handlers.invoke(b"ignored", "text/csv", None, Context("/m", HEADERS))
    assert (body, content_type) == (b"3.0,6.0\n", "text/csv")
    assert seen == {"input": "a=1", "scale": 3}


def test_no_context_needed_for_plain_handlers():
    assert not make(predict_fn=lambda data, model: data).needs_context


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (b"raw", (b"raw", "application/json")),
        ("text", (b"text", "application/json")),
        ((b"x", "image/png"), (b"x", "image/png")),
        (np.array([1, 2]), (b"[1,2]", "application/json")),
        ((np.array([1, 2]), "text/csv"), (b"1\n2\n", "text/csv")),
        ((np.array([1, 2]), "image/png"), (b"[1,2]", "application/json")),
    ],
)
def test_output_fn_results(result, expected):
    handlers = make(output_fn=lambda prediction, accept: result)
    assert handlers.invoke(b"[1]", "application/json", "application/json") == expected


def test_transform_fn_gets_text_for_json_and_bytes_otherwise():
    def transform_fn(model, body, content_type, accept):
        return type(body).__name__

    handlers = make(transform_fn=transform_fn)
    assert handlers.invoke(b"[1]", "application/json", None)[0] == b"str"
    assert handlers.invoke(b"\x00", "application/octet-stream", None)[0] == b"bytes"
