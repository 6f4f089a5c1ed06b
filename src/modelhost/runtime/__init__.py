"""The runtime API: invoke paths for endpoints."""

from modelhost.runtime.invoke import (
    PayloadTooLarge,
    RealtimeInvoker,
    response_headers,
)

__all__ = ["PayloadTooLarge", "RealtimeInvoker", "response_headers"]
