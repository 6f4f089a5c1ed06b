"""Content types the built-in handlers speak: request decoders, response encoders, Accept.

The default ``input_fn`` turns a body into a numpy array and the default ``output_fn`` turns a
prediction back into bytes, for the four types SageMaker's own framework containers accept:
``text/csv``, ``application/json``, ``application/x-npy`` and ``application/jsonlines``.
Everything here runs on every request, so the common cases take the shortest path.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from modelhost.modelserver.errors import (
    BadRequestError,
    UnsupportedAcceptError,
    UnsupportedContentTypeError,
)

CSV = "text/csv"
JSON = "application/json"
NPY = "application/x-npy"
JSONLINES = "application/jsonlines"

#: What a request without a Content-Type header is taken to be.
DEFAULT_CONTENT_TYPE = JSON

#: Types whose bodies user handlers receive as ``str`` (the toolkit decodes these as UTF-8).
UTF8_TYPES = frozenset({CSV, JSON})


@lru_cache(maxsize=256)
def media_type(header: str | None) -> str:
    """``"Text/CSV; charset=utf-8"`` → ``"text/csv"``; empty or missing → ``""``."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


@lru_cache(maxsize=256)
def accepted_types(header: str | None) -> tuple[str, ...]:
    """The media types an Accept header lists, in order, without parameters; ``()`` if none."""
    if not header:
        return ()
    return tuple(t for t in (media_type(part) for part in header.split(",")) if t)


def _is_wildcard(mtype: str) -> bool:
    return "*" in mtype


def default_accept(content_type: str, configured: str | None) -> str:
    """The response type for a missing or ``*/*`` Accept.

    ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` if set, else the request's own type when we can
    encode it (CSV in, CSV out), else JSON.
    """
    if configured:
        return media_type(configured) or JSON
    return content_type if content_type in ENCODERS else JSON


@lru_cache(maxsize=256)
def negotiate(accept: str | None, content_type: str, configured: str | None) -> str:
    """The type the built-in encoders will produce, or :class:`UnsupportedAcceptError` (406)."""
    types = accepted_types(accept)
    if not types:
        return default_accept(content_type, configured)
    for mtype in types:
        if _is_wildcard(mtype):
            return default_accept(content_type, configured)
        if mtype in ENCODERS:
            return mtype
    raise UnsupportedAcceptError(
        f"Accept {accept!r} is not supported; supported: {', '.join(ENCODERS)}"
    )


@lru_cache(maxsize=256)
def requested_accept(accept: str | None, content_type: str, configured: str | None) -> str:
    """The Accept passed to a user ``output_fn``/``transform_fn``: first concrete type asked for.

    User code may produce types we cannot, so no 406 here; wildcards become the default.
    """
    for mtype in accepted_types(accept):
        if not _is_wildcard(mtype):
            return mtype
    return default_accept(content_type, configured)


# --- decoders: bytes -> numpy array -------------------------------------------------------


def _array(obj: Any) -> np.ndarray:
    try:
        return np.asarray(obj)
    except ValueError as exc:  # ragged rows
        raise BadRequestError(f"rows must all have the same length: {exc}") from None


def _as_rows(obj: Any) -> np.ndarray:
    """A nested list to an array; one flat row becomes shape ``(1, n)``."""
    array = _array(obj)
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array


def as_text(body: bytes | str) -> str:
    """UTF-8 text of a body, or a 400."""
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"request body is not UTF-8: {exc}") from None


def decode_csv(body: bytes | str) -> np.ndarray:
    """Rows of numbers to a 2-D float array; blank lines, CRLF and a trailing newline are fine."""
    rows = [line.split(",") for line in as_text(body).splitlines() if line.strip()]
    if not rows:
        raise BadRequestError("empty CSV body")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise BadRequestError(f"could not parse CSV: {exc}") from None


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"could not parse JSON: {exc}") from None


def decode_json(body: bytes | str) -> np.ndarray | dict[str, np.ndarray]:
    """A list of rows, one row, ``{"instances": rows}`` or ``{"inputs": rows}`` to an array.

    ``{"inputs": {"name": rows, ...}}`` gives a dict of arrays, for models with several named
    inputs (ONNX).
    """
    obj = _loads(body)
    if isinstance(obj, dict):
        if "instances" in obj:
            obj = obj["instances"]
        elif "inputs" in obj:
            obj = obj["inputs"]
            if isinstance(obj, dict):
                return {str(name): _as_rows(value) for name, value in obj.items()}
        else:
            raise BadRequestError('a JSON object body needs an "instances" or "inputs" key')
    return _as_rows(obj)


def decode_jsonlines(body: bytes | str) -> np.ndarray:
    """One JSON value per line, each a record: ``[1, 2]\\n[3, 4]`` → shape ``(2, 2)``."""
    data = body.encode() if isinstance(body, str) else body
    records = [_loads(line) for line in data.splitlines() if line.strip()]
    if not records:
        raise BadRequestError("empty JSON Lines body")
    array = _array(records)
    # Each line is a record, so a column of scalars is n rows of one feature, not one row.
    return array.reshape(-1, 1) if array.ndim == 1 else array


def decode_npy(body: bytes | str) -> np.ndarray:
    """A ``numpy.save`` payload; pickled object arrays are refused."""
    data = body.encode("latin-1") if isinstance(body, str) else body
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadRequestError(f"could not parse NPY: {exc}") from None


DECODERS: dict[str, Callable[[bytes | str], Any]] = {
    CSV: decode_csv,
    JSON: decode_json,
    NPY: decode_npy,
    JSONLINES: decode_jsonlines,
}


def decode(body: bytes | str, content_type: str) -> Any:
    """Decode with the built-in decoder for ``content_type`` (a bare media type), or 415."""
    decoder = DECODERS.get(content_type)
    if decoder is None:
        raise UnsupportedContentTypeError(
            f"Content-Type {content_type!r} is not supported; supported: {', '.join(DECODERS)}"
        )
    return decoder(body)


# --- encoders: prediction -> bytes ---------------------------------------------------------


def _json_default(obj: Any) -> Any:
    """What orjson cannot serialize natively: non-contiguous arrays, numpy scalars, sets."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_json(prediction: Any) -> bytes:
    """A numpy array becomes a (nested) list; anything orjson can handle goes as is."""
    return orjson.dumps(prediction, default=_json_default, option=_JSON_OPTIONS)


def encode_csv(prediction: Any) -> bytes:
    """One prediction per line for 1-D, comma-joined rows for 2-D, newline-terminated."""
    array = np.asarray(prediction)
    if array.ndim > 2:
        raise ValueError(f"cannot encode a {array.ndim}-D prediction as CSV")
    rows = array.reshape(-1, 1) if array.ndim < 2 else array
    if array.dtype.kind in "biuf":
        lines = [",".join(map(str, row)) for row in rows.tolist()]
        return ("\n".join(lines) + "\n").encode()
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows.tolist())
    return out.getvalue().encode()


def encode_jsonlines(prediction: Any) -> bytes:
    """One JSON value per line: each row of an array, each item of a list."""
    if isinstance(prediction, np.ndarray):
        prediction = prediction.tolist() if prediction.ndim else [prediction.item()]
    records = prediction if isinstance(prediction, list) else [prediction]
    return b"".join(encode_json(record) + b"\n" for record in records)


def encode_npy(prediction: Any) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(prediction), allow_pickle=False)
    return out.getvalue()


ENCODERS: dict[str, Callable[[Any], bytes]] = {
    JSON: encode_json,
    CSV: encode_csv,
    NPY: encode_npy,
    JSONLINES: encode_jsonlines,
}


def encode(prediction: Any, accept: str) -> bytes:
    """Encode with the built-in encoder for ``accept`` (a bare media type), or 406."""
    encoder = ENCODERS.get(accept)
    if encoder is None:
        raise UnsupportedAcceptError(
            f"Accept {accept!r} is not supported; supported: {', '.join(ENCODERS)}"
        )
    return encoder(prediction)
