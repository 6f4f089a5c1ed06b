"""Reconcile loops that move the world toward the desired state in the store."""

from modelhost.controllers.async_inference import AsyncInferenceController
from modelhost.controllers.endpoints import EndpointController
from modelhost.controllers.recommender import RecommendationController
from modelhost.controllers.schedules import ScheduleController
from modelhost.controllers.transform import TransformController

__all__ = [
    "AsyncInferenceController",
    "EndpointController",
    "RecommendationController",
    "ScheduleController",
    "TransformController",
]
