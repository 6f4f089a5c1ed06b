"""Reconcile loops that move the world toward the desired state in the store."""

from modelhost.controllers.async_inference import AsyncInferenceController
from modelhost.controllers.autoscaling import AutoscalingController
from modelhost.controllers.endpoints import EndpointController
from modelhost.controllers.instance_registry import ROUTES, InstanceRegistry
from modelhost.controllers.loop import cancel_all
from modelhost.controllers.metrics_recorder import MetricsRecorder
from modelhost.controllers.recommender import RecommendationController
from modelhost.controllers.scaling_metrics import (
    Gauge,
    MetricResolver,
    PerInstance,
    PerMinute,
    sagemaker_metrics,
)
from modelhost.controllers.transform import TransformController
from modelhost.controllers.transform_schedules import TransformScheduleController

__all__ = [
    "ROUTES",
    "AsyncInferenceController",
    "AutoscalingController",
    "EndpointController",
    "Gauge",
    "InstanceRegistry",
    "MetricResolver",
    "MetricsRecorder",
    "PerInstance",
    "PerMinute",
    "RecommendationController",
    "TransformController",
    "TransformScheduleController",
    "cancel_all",
    "sagemaker_metrics",
]
