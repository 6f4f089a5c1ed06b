"""The control plane: SageMaker operations on models, endpoint configs, endpoints, tags, and
Application Auto Scaling operations on scalable targets, policies and scheduled actions."""

from modelhost.api import rpcv2_cbor, schedules, transform_jobs
from modelhost.api.context import Context
from modelhost.api.endpoints import deployed_fields, update_endpoint_weights_and_capacities
from modelhost.api.protocol import handle
from modelhost.api.recommendations import candidate_label
from modelhost.api.serverless import instance_bounds
from modelhost.api.service_models import DATA_PATH as SERVICE_DATA_PATH

__all__ = [
    "SERVICE_DATA_PATH",
    "Context",
    "candidate_label",
    "deployed_fields",
    "handle",
    "instance_bounds",
    "rpcv2_cbor",
    "schedules",
    "transform_jobs",
    "update_endpoint_weights_and_capacities",
]
