"""Reconcile loops that move the world toward the desired state in the store."""

from modelhost.controllers.endpoints import EndpointController
from modelhost.controllers.recommender import RecommendationController

__all__ = ["EndpointController", "RecommendationController"]
