"""The SageMaker control plane: operations on models, endpoint configs, endpoints, tags."""

from modelhost.api.context import Context
from modelhost.api.endpoints import variant_summaries
from modelhost.api.protocol import handle
from modelhost.api.serverless import instance_bounds

__all__ = ["Context", "handle", "instance_bounds", "variant_summaries"]
