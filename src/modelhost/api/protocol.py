"""The AWS JSON 1.1 protocol of the control plane: `POST /` with `X-Amz-Target:
SageMaker.<Operation>` (or `AnyScaleFrontendService.<Operation>` for Application Auto
Scaling). Finds the operation in botocore's service model, validates the
request against it, runs it, and answers in the shape botocore parses."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import botocore.session
import orjson
from botocore.model import OperationModel, ServiceModel

from modelhost.api.context import Context
from modelhost.api.operations import (
    AUTOSCALING_OPERATIONS,
    MODELHOST_OPERATIONS,
    SAGEMAKER_OPERATIONS,
    Operation,
)
from modelhost.api.validation import validate_request
from modelhost.errors import InternalFailure, SageMakerError, UnknownOperation, ValidationError

log = logging.getLogger(__name__)

# X-Amz-Target prefix -> (botocore service name, operations)
_SERVICES: dict[str, tuple[str, dict[str, Operation]]] = {
    "SageMaker": ("sagemaker", SAGEMAKER_OPERATIONS),
    "AnyScaleFrontendService": ("application-autoscaling", AUTOSCALING_OPERATIONS),
}


@cache
def _service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def operation_model(target: str) -> OperationModel:
    """botocore's model of a `Service.Operation` target (its request and answer shapes)."""
    return _lookup(target)[0]


def _lookup(target: str) -> tuple[OperationModel, Operation]:
    prefix, _, name = target.partition(".")
    if prefix not in _SERVICES:
        raise UnknownOperation(f"Unknown service target: {target!r}")
    service, operations = _SERVICES[prefix]
    model = _service_model(service)
    if name not in operations:
        if name in model.operation_names:
            raise UnknownOperation(f"Operation {name} is not supported by modelhost.")
        raise UnknownOperation(f"Unknown operation: {name!r}")
    return model.operation_model(name), operations[name]


def handle(ctx: Context, target: str, body: bytes) -> tuple[int, bytes]:
    """Run one control-plane call; returns the status and the JSON body to send."""
    try:
        prefix, _, name = target.partition(".")
        own = MODELHOST_OPERATIONS.get(name) if prefix == "Modelhost" else None
        if prefix == "Modelhost" and own is None:
            raise UnknownOperation(f"Unknown operation: {name!r}")
        model, operation = (None, own) if own is not None else _lookup(target)
        try:
            params: Any = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"Request body is not valid JSON: {exc}") from exc
        if model is not None:
            validate_request(params, model.input_shape)
        elif not isinstance(params, dict):
            raise ValidationError("The request body must be a JSON object.")
        result = operation(ctx, params)
        return 200, orjson.dumps(result)
    except SageMakerError as error:
        return error.status, orjson.dumps(error.body())
    except Exception:
        log.exception("control-plane call %s failed", target)
        error = InternalFailure("An internal error occurred; see the modelhost server log.")
        return error.status, orjson.dumps(error.body())
