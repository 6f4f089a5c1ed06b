"""The runtime API: invoke paths for endpoints."""

from modelhost.runtime.async_invoke import AsyncAccepter, object_io
from modelhost.runtime.invoke import (
    PayloadTooLarge,
    RealtimeInvoker,
    response_headers,
)
from modelhost.runtime.notifications import Notifier, notification
from modelhost.runtime.protocol import DRAIN_BYTES, InvocationProtocol, protocol_for
from modelhost.runtime.response_stream import stream_invocation

__all__ = [
    "DRAIN_BYTES",
    "AsyncAccepter",
    "InvocationProtocol",
    "Notifier",
    "PayloadTooLarge",
    "RealtimeInvoker",
    "notification",
    "object_io",
    "protocol_for",
    "response_headers",
    "stream_invocation",
]
