"""The Smithy RPC v2 CBOR protocol, which botocore speaks to CloudWatch:
`POST /service/<target prefix>/operation/<Operation>` with a CBOR body and the header
`smithy-protocol: rpc-v2-cbor`. A thin layer over the JSON 1.1 dispatch: it decodes the
body, runs the call through the same lookup, validation and operations, and encodes the
answer, tagging the members the model says are timestamps as CBOR epoch times (tag 1).

botocore 1.43 prefers JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`, served
by the JSON dispatch) where a model lists both; this transport serves the clients and
SDKs that pick CBOR. Only services whose model lists the protocol are served here (of
modelhost's, CloudWatch): the others' operations are refused before they run, as AWS
would refuse them, and the protocol could not carry modelhost's document members anyway.

Every answer on this route is CBOR in the protocol's error format, a genuine bug
included (InternalFailure, with the traceback in the log): a plain-text 500 is not an
error any CBOR client can read.
"""

from __future__ import annotations

import datetime
import logging
import math
from typing import Any

import cbor2
from botocore.model import Shape

from modelhost.api.context import Context
from modelhost.api.protocol import call
from modelhost.api.service_models import operation_model
from modelhost.errors import InternalFailure, SageMakerError, UnknownOperation, ValidationError

log = logging.getLogger(__name__)

PREFIX = "/service/"
_PROTOCOL = "smithy-rpc-v2-cbor"
Headers = list[tuple[bytes, bytes]]
_HEADERS: Headers = [(b"smithy-protocol", b"rpc-v2-cbor"), (b"content-type", b"application/cbor")]
# What a JSON body can hold, so both protocols take the same requests: 64-bit integers,
# finite numbers, string keys, and no nesting past what any SageMaker shape needs.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
_MAX_DEPTH = 100


def handle(ctx: Context, path: str, body: bytes) -> tuple[int, bytes, Headers]:
    """Run the call `path` names; returns the status, CBOR body and protocol headers."""
    try:
        return _handle(ctx, path, body)
    except Exception:
        log.exception("RPC v2 CBOR call %s failed", path[:200])
        return error_answer(
            InternalFailure("An internal error occurred; see the modelhost server log.")
        )


def error_answer(error: SageMakerError, status: int | None = None) -> tuple[int, bytes, Headers]:
    """An error as RPC v2 CBOR carries it: `__type` and `message` in a CBOR map."""
    return (
        status or error.status,
        cbor2.dumps({"__type": error.code, "message": error.message}),
        list(_HEADERS),
    )


def _handle(ctx: Context, path: str, body: bytes) -> tuple[int, bytes, Headers]:
    service, _, operation = path[len(PREFIX) :].partition("/operation/")
    target = f"{service}.{operation}"
    try:
        model = operation_model(target)
        if _PROTOCOL not in model.service_model.metadata.get("protocols", ()):
            raise UnknownOperation(
                f"{service} operations are not served over RPC v2 CBOR; send them as AWS "
                f"JSON (POST / with X-Amz-Target: {target})."
            )
    except SageMakerError as error:
        return error_answer(error)

    def decode() -> Any:
        try:
            params = cbor2.loads(body) if body else {}
        except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
            raise ValidationError(f"Request body is not valid CBOR: {str(exc)[:300]}") from exc
        _check_plain(params, 0)
        return params

    status, answer = call(ctx, target, decode)
    if status != 200:
        return (
            status,
            cbor2.dumps({"__type": answer["__type"], "message": answer["message"]}),
            list(_HEADERS),
        )
    answer = _tag_timestamps(answer, model.output_shape)
    return status, cbor2.dumps(answer), list(_HEADERS)


def _check_plain(value: Any, depth: int) -> None:
    """Refuse what CBOR can carry and a JSON body cannot (big integers, NaN, non-string
    keys, undefined, sets, unknown tags): the operations and the store take JSON values."""
    if depth > _MAX_DEPTH:
        raise ValidationError("Request is nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"Request has a map key that is not a string: {str(key)[:64]}"
                )
            _check_plain(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_plain(item, depth + 1)
    elif isinstance(value, bool) or value is None or isinstance(value, str | bytes):
        return
    elif isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise ValidationError(f"Request has an integer outside 64 bits: {str(value)[:64]}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"Request has a number that is not finite: {value}")
    elif isinstance(value, datetime.datetime):
        return  # tag 1: a timestamp member; the validator refuses it anywhere else
    else:
        raise ValidationError(
            f"Request has a value of an unsupported CBOR type: {type(value).__name__}"
        )


def _tag_timestamps(value: Any, shape: Shape | None) -> Any:
    """The answer with its timestamp members (epoch seconds) as CBOR tag 1."""
    if shape is None:
        return value
    if shape.type_name == "timestamp" and isinstance(value, int | float):
        return cbor2.CBORTag(1, value)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {
            k: _tag_timestamps(v, shape.members.get(k))
            for k, v in value.items()
            if k in shape.members
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [_tag_timestamps(item, shape.member) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _tag_timestamps(v, shape.value) for k, v in value.items()}
    return value
