"""The Smithy RPC v2 CBOR protocol, which botocore speaks to CloudWatch:
`POST /service/<target prefix>/operation/<Operation>` with a CBOR body and the header
`smithy-protocol: rpc-v2-cbor`. A thin layer over the JSON 1.1 dispatch: it decodes the
body, runs the call through the same lookup, validation and operations, and encodes the
answer, tagging the members the model says are timestamps as CBOR epoch times (tag 1).

botocore 1.43 prefers JSON 1.0 (`X-Amz-Target: GraniteServiceVersion20100801.<Op>`, served
by the JSON dispatch) where a model lists both; this transport serves the clients and
SDKs that pick CBOR.
"""

from __future__ import annotations

from typing import Any

import cbor2
from botocore.model import Shape

from modelhost.api.context import Context
from modelhost.api.protocol import call
from modelhost.api.service_models import operation_model
from modelhost.errors import ValidationError

PREFIX = "/service/"


def handle(ctx: Context, path: str, body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Run the call `path` names; returns the status, CBOR body and protocol headers."""
    service, _, operation = path[len(PREFIX):].partition("/operation/")
    target = f"{service}.{operation}"

    def decode() -> Any:
        try:
            return cbor2.loads(body) if body else {}
        except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
            raise ValidationError(f"Request body is not valid CBOR: {exc}") from exc

    status, answer = call(ctx, target, decode)
    headers = [(b"smithy-protocol", b"rpc-v2-cbor"), (b"content-type", b"application/cbor")]
    if status != 200:
        answer = {"__type": answer["__type"], "message": answer["message"]}
    else:
        answer = _tag_timestamps(answer, operation_model(target).output_shape)
    return status, cbor2.dumps(answer), headers


def _tag_timestamps(value: Any, shape: Shape | None) -> Any:
    """The answer with its timestamp members (epoch seconds) as CBOR tag 1."""
    if shape is None:
        return value
    if shape.type_name == "timestamp" and isinstance(value, int | float):
        return cbor2.CBORTag(1, value)
    if shape.type_name == "structure" and isinstance(value, dict):
        return {k: _tag_timestamps(v, shape.members.get(k)) for k, v in value.items()
                if k in shape.members}
    if shape.type_name == "list" and isinstance(value, list):
        return [_tag_timestamps(item, shape.member) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _tag_timestamps(v, shape.value) for k, v in value.items()}
    return value
