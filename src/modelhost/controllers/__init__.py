"""Reconcile loops that move the world toward the desired state in the store."""

from modelhost.controllers.autoscaling import AutoscalingController
from modelhost.controllers.endpoints import EndpointController
from modelhost.controllers.scaling_metrics import (
    Gauge,
    MetricResolver,
    PerInstance,
    PerMinute,
    sagemaker_metrics,
)

__all__ = ["AutoscalingController", "EndpointController", "Gauge", "MetricResolver",
           "PerInstance", "PerMinute", "sagemaker_metrics"]
