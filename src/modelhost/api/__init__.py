"""The SageMaker control plane: operations on models, endpoint configs, endpoints, tags."""

from modelhost.api.context import Context
from modelhost.api.endpoints import variant_summaries
from modelhost.api.protocol import handle
from modelhost.api.recommendations import candidate_label

__all__ = ["Context", "candidate_label", "handle", "variant_summaries"]
