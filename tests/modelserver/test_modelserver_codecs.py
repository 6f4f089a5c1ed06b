"""Content-type decoding, encoding and Accept negotiation (pure functions, in process)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from modelhost.modelserver import codecs
from modelhost.modelserver.errors import (
    BadRequestError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)


def test_media_type_strips_parameters_and_case():
    assert codecs.media_type("Text/CSV; charset=utf-8") == "text/csv"
    assert codecs.media_type(None) == ""


def test_csv_decoding():
    assert codecs.decode(b"1,2\r\n3,4\r\n\r\n", "text/csv").tolist() == [[1, 2], [3, 4]]
    single = codecs.decode("1.5,2", "text/csv")
    assert single.shape == (1, 2) and single.dtype == np.float64
    with pytest.raises(BadRequestError, match="could not parse CSV"):
        codecs.decode(b"1,2\n3\n", "text/csv")
    with pytest.raises(BadRequestError, match="empty"):
        codecs.decode(b"\n", "text/csv")
    with pytest.raises(BadRequestError, match="UTF-8"):
        codecs.decode(b"\xff,1", "text/csv")


def test_json_decoding_forms():
    for body in (b"[[1,2],[3,4]]", b'{"instances": [[1,2],[3,4]]}', b'{"inputs": [[1,2],[3,4]]}'):
        assert codecs.decode(body, "application/json").tolist() == [[1, 2], [3, 4]]
    assert codecs.decode(b"[1,2,3]", "application/json").shape == (1, 3)
    named = codecs.decode(b'{"inputs": {"a": [1, 2]}}', "application/json")
    assert named["a"].shape == (1, 2)
    with pytest.raises(BadRequestError, match="instances"):
        codecs.decode(b'{"rows": []}', "application/json")


def test_jsonlines_decoding_one_record_per_line():
    assert codecs.decode(b"[1,2]\n[3,4]\n", "application/jsonlines").shape == (2, 2)
    assert codecs.decode(b"1\n2\n3", "application/jsonlines").shape == (3, 1)


def test_npy_round_trip_and_no_pickles():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    decoded = codecs.decode(codecs.encode(array, "application/x-npy"), "application/x-npy")
    assert decoded.dtype == np.float32 and decoded.tolist() == array.tolist()
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadRequestError):
        codecs.decode(buf.getvalue(), "application/x-npy")


def test_unsupported_content_type():
    with pytest.raises(UnsupportedContentTypeError) as info:
        codecs.decode(b"x", "text/plain")
    assert info.value.status_code == 415


def test_encoders():
    labels = np.array([0, 1, 2])
    assert codecs.encode(labels, "application/json") == b"[0,1,2]"
    assert codecs.encode(labels[::2], "application/json") == b"[0,2]"  # non-contiguous
    assert codecs.encode({"p": np.float32(0.5)}, "application/json") == b'{"p":0.5}'
    assert codecs.encode(labels, "text/csv") == b"0\n1\n2\n"
    assert codecs.encode(np.array([[0.5, 1.0], [2.0, 3.25]]), "text/csv") == b"0.5,1.0\n2.0,3.25\n"
    assert codecs.encode(np.array(["a,b", "c"]), "text/csv") == b'"a,b"\nc\n'
    assert codecs.encode(np.array([[1, 2], [3, 4]]), "application/jsonlines") == b"[1,2]\n[3,4]\n"
    assert codecs.encode(np.int64(7), "application/jsonlines") == b"7\n"


def test_accept_negotiation():
    assert codecs.negotiate(None, "text/csv", None) == "text/csv"
    assert codecs.negotiate("*/*", "application/x-npy", None) == "application/x-npy"
    assert codecs.negotiate("*/*", "image/png", None) == "application/json"
    assert codecs.negotiate(None, "text/csv", "application/jsonlines") == "application/jsonlines"
    assert codecs.negotiate("image/png, text/csv;q=0.5", "application/json", None) == "text/csv"
    with pytest.raises(UnsupportedAcceptError) as info:
        codecs.negotiate("image/png", "text/csv", None)
    assert info.value.status_code == 406
    # User output_fn gets the first concrete type, even one we cannot encode.
    assert codecs.requested_accept("image/png", "text/csv", None) == "image/png"
    assert codecs.requested_accept("*/*", "text/csv", None) == "text/csv"
