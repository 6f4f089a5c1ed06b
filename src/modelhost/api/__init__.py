"""The SageMaker control plane: operations on models, endpoint configs, endpoints, tags."""

from modelhost.api import schedules, transform_jobs
from modelhost.api.context import Context
from modelhost.api.endpoints import variant_summaries
from modelhost.api.protocol import handle

__all__ = ["Context", "handle", "schedules", "transform_jobs", "variant_summaries"]
