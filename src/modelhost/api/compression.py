"""Request bodies sent gzip-compressed (`Content-Encoding: gzip`): botocore compresses
CloudWatch's PutMetricData once its body passes 10 KB, whatever the protocol. The
signature covers the compressed bytes; the operation reads the inflated ones, never more
than the control plane's body limit (a small gzip can inflate to gigabytes)."""

from __future__ import annotations

import zlib

from modelhost.errors import RequestTooLarge, ValidationError


def compressed(headers: dict[bytes, bytes]) -> bool:
    """Whether the body is gzip; any other content coding is refused."""
    coding = headers.get(b"content-encoding", b"").strip().lower()
    if coding in (b"", b"identity"):
        return False
    if coding == b"gzip":
        return True
    raise ValidationError(
        f"Content-Encoding {coding.decode('latin-1')[:64]!r} is not supported; send the body "
        "uncompressed or gzip."
    )


def inflate(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValidationError(f"The request body is not valid gzip: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise RequestTooLarge(
            f"The request body inflates to more than {limit // 1024} KiB; control-plane "
            "requests are small documents."
        )
    if not inflater.eof:
        raise ValidationError("The request body is truncated gzip.")
    return inflated
