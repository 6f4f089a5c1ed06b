"""modelhost: a self-hosted model deployment platform that speaks the SageMaker API."""

__version__ = "0.1.0"
