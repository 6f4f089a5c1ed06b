"""The runtime API: invoke paths for endpoints."""

from modelhost.runtime.async_invoke import AsyncAccepter, object_io
from modelhost.runtime.invoke import (
    PayloadTooLarge,
    RealtimeInvoker,
    response_headers,
)
from modelhost.runtime.notifications import Notifier, notification
from modelhost.runtime.response_stream import stream_invocation

__all__ = [
    "AsyncAccepter",
    "Notifier",
    "PayloadTooLarge",
    "RealtimeInvoker",
    "notification",
    "object_io",
    "response_headers",
    "stream_invocation",
]
