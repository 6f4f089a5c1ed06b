"""The AWS event stream framing (`application/vnd.amazon.eventstream`) that
InvokeEndpointWithResponseStream answers with.

botocore only decodes this format (`botocore.eventstream`), so the few lines that encode it
live here. A message is a prelude (total length, headers length, CRC32 of those 8 bytes),
the headers, the payload and a CRC32 of everything before it; every header we send is a
string (type 7). The events are those of sagemaker-runtime's `ResponseStream` shape:
`PayloadPart` carries the bytes as its event payload, `ModelStreamError` and
`InternalStreamFailure` are exception events with a JSON body.
"""

from __future__ import annotations

import struct
from binascii import crc32

import orjson

CONTENT_TYPE = b"application/vnd.amazon.eventstream"
_STRING = 7
_PRELUDE = struct.Struct(">II")


def _headers(headers: tuple[tuple[bytes, bytes], ...]) -> bytes:
    out = bytearray()
    for name, value in headers:
        out += bytes((len(name),)) + name + bytes((_STRING,))
        out += struct.pack(">H", len(value)) + value
    return bytes(out)


def message(encoded: bytes, payload: bytes) -> bytes:
    """One event stream message, its headers already encoded by `_headers`."""
    prelude = _PRELUDE.pack(16 + len(encoded) + len(payload), len(encoded))
    head = prelude + struct.pack(">I", crc32(prelude)) + encoded
    # The payload is copied once, into the message; the CRC runs on from the head's.
    return b"".join((head, payload, struct.pack(">I", crc32(payload, crc32(head)))))


# Encoded once: every part of every stream carries the same headers.
_PAYLOAD_PART = _headers(
    (
        (b":event-type", b"PayloadPart"),
        (b":content-type", b"application/octet-stream"),
        (b":message-type", b"event"),
    )
)


def payload_part(data: bytes) -> bytes:
    """A `PayloadPart` event carrying `data`."""
    return message(_PAYLOAD_PART, data)


def stream_error(exception_type: str, message_text: str, error_code: str | None = None) -> bytes:
    """An exception event: `ModelStreamError` (with its ErrorCode) or
    `InternalStreamFailure`; botocore raises it as an EventStreamError while iterating."""
    body: dict[str, str] = {"Message": message_text}
    if error_code is not None:
        body["ErrorCode"] = error_code
    return message(
        _headers(
            (
                (b":exception-type", exception_type.encode()),
                (b":content-type", b"application/json"),
                (b":message-type", b"exception"),
            )
        ),
        orjson.dumps(body),
    )
