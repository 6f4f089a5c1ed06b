"""Reconcile loops that move the world toward the desired state in the store."""

from modelhost.controllers.async_inference import AsyncInferenceController
from modelhost.controllers.endpoints import EndpointController

__all__ = ["AsyncInferenceController", "EndpointController"]
