"""The control plane: SageMaker operations on models, endpoint configs, endpoints, tags, and
Application Auto Scaling operations on scalable targets, policies and scheduled actions,
CloudWatch alarms and metrics."""

from modelhost.api import compression, rpcv2_cbor, transform_jobs, transform_schedules
from modelhost.api.context import Context
from modelhost.api.endpoints import update_endpoint_weights_and_capacities
from modelhost.api.protocol import handle
from modelhost.api.service_models import DATA_PATH as SERVICE_DATA_PATH

__all__ = [
    "SERVICE_DATA_PATH",
    "Context",
    "compression",
    "handle",
    "rpcv2_cbor",
    "transform_jobs",
    "transform_schedules",
    "update_endpoint_weights_and_capacities",
]
