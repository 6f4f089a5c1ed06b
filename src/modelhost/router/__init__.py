"""Instance selection and the connection pool in front of the instances."""

from modelhost.router.components import ComponentRoute, unknown_component
from modelhost.router.multimodel import ENV_MAX_LOADED, ModelSource
from modelhost.router.pool import Deployment, Replica, VariantPool
from modelhost.router.router import Answer, Invocation, Router, StreamInterrupted
from modelhost.router.serverless import ServerlessPool

__all__ = [
    "ENV_MAX_LOADED",
    "Answer",
    "ComponentRoute",
    "Deployment",
    "Invocation",
    "ModelSource",
    "Replica",
    "Router",
    "ServerlessPool",
    "StreamInterrupted",
    "VariantPool",
    "unknown_component",
]
