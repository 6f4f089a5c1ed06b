"""Instance selection and the connection pool in front of the instances."""

from modelhost.router.pool import Deployment, Replica, VariantPool
from modelhost.router.router import Answer, Invocation, Router

__all__ = ["Answer", "Deployment", "Invocation", "Replica", "Router", "VariantPool"]
