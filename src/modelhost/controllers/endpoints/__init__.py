"""The endpoint controller."""

from modelhost.controllers.endpoints.controller import EndpointController

__all__ = ["EndpointController"]
