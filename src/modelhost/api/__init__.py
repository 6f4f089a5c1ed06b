"""The control plane: SageMaker operations on models, endpoint configs, endpoints, tags, and
Application Auto Scaling operations on scalable targets, policies and scheduled actions."""

from modelhost.api.context import Context
from modelhost.api.endpoints import change_capacities, variant_summaries
from modelhost.api.protocol import handle

__all__ = ["Context", "change_capacities", "handle", "variant_summaries"]
