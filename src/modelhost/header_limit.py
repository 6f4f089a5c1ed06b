"""A cap on the size of a request's headers.

httptools, which parses requests for uvicorn here, accepts header blocks of any size;
AWS's front ends refuse large ones, and so does modelhost: a client sending megabytes of
headers gets a 431 in SageMaker's error format, in the route's own protocol. The check is
on the parsed headers, so it is one short loop per request on the hot path.
"""

from __future__ import annotations

MAX_HEADER_BYTES = 16 * 1024


def too_large(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the header names and values add up to more than MAX_HEADER_BYTES."""
    total = 0
    for name, value in headers:
        total += len(name) + len(value)
    return total > MAX_HEADER_BYTES


def message() -> str:
    return (
        f"Request headers exceed {MAX_HEADER_BYTES // 1024} KiB in total; send large "
        "values in the request body."
    )
