"""Instance selection and the connection pool in front of the instances."""

from modelhost.router.pool import Deployment, Replica, VariantPool
from modelhost.router.router import Answer, Invocation, Router, StreamInterrupted
from modelhost.router.serverless import ServerlessPool

__all__ = [
    "Answer",
    "Deployment",
    "Invocation",
    "Replica",
    "Router",
    "ServerlessPool",
    "StreamInterrupted",
    "VariantPool",
]
