"""Errors in SageMaker's wire format.

Every API path raises one of these; the protocol layers turn them into the JSON body and
status code botocore expects, so clients see the same exception classes as against AWS.
"""

from __future__ import annotations

from typing import Any


class SageMakerError(Exception):
    code = "InternalFailure"
    status = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return {
            "__type": self.code,
            "message": self.message,
            "Message": self.message,
            **self.fields,
        }


class ValidationError(SageMakerError):
    code = "ValidationException"
    status = 400


class RequestTooLarge(ValidationError):
    status = 413


class InvocationValidationError(ValidationError):
    """sagemaker-runtime names its 400 error ValidationError, unlike the control plane."""

    code = "ValidationError"


class ObjectNotFound(SageMakerError):
    """Application Auto Scaling's not-found error (SageMaker reports those as validation)."""

    code = "ObjectNotFoundException"
    status = 400


class ResourceNotFound(SageMakerError):
    """Application Auto Scaling's answer to tag operations on an unknown ARN."""

    code = "ResourceNotFoundException"
    status = 400


class ResourceLimitExceeded(SageMakerError):
    code = "ResourceLimitExceeded"
    status = 400


class UnknownOperation(SageMakerError):
    code = "UnknownOperationException"
    status = 400


class ModelError(SageMakerError):
    """The model container answered with an error; SageMaker reports it as 424."""

    code = "ModelError"
    status = 424


class Throttling(SageMakerError):
    """Too many requests at once: a serverless variant past its MaxConcurrency. botocore
    treats the code as a throttle, so its retry modes back off and try again."""

    code = "ThrottlingException"
    status = 429


class ServiceUnavailable(SageMakerError):
    code = "ServiceUnavailable"
    status = 503


class RequestTimeout(SageMakerError):
    """The request body stopped arriving; the connection is closed with the answer."""

    code = "RequestTimeout"
    status = 408


class InternalFailure(SageMakerError):
    code = "InternalFailure"
    status = 500


class AlarmNotFound(SageMakerError):
    """CloudWatch's not-found error (DeleteAlarms of an alarm that does not exist)."""

    code = "ResourceNotFound"
    status = 404
