"""The AWS JSON 1.1 protocol of the control plane: `POST /` with `X-Amz-Target:
SageMaker.<Operation>` (or `AnyScaleFrontendService.<Operation>` for Application Auto
Scaling, `Modelhost.<Operation>` for modelhost's own). Finds the operation in its
service model, validates the request against it, runs it, and answers in the shape
botocore parses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from botocore.model import OperationModel

from modelhost.api.context import Context
from modelhost.api.operations import (
    AUTOSCALING_OPERATIONS,
    CLOUDWATCH_OPERATIONS,
    LOGS_OPERATIONS,
    MODELHOST_OPERATIONS,
    SAGEMAKER_OPERATIONS,
    Operation,
)
from modelhost.api.service_models import SERVICE_NAMES, service_model
from modelhost.api.validation import validate_request
from modelhost.errors import InternalFailure, SageMakerError, UnknownOperation, ValidationError

log = logging.getLogger(__name__)

# X-Amz-Target prefix -> (botocore service name, operations)
_SERVICES: dict[str, tuple[str, dict[str, Operation]]] = {
    prefix: (SERVICE_NAMES[prefix], operations)
    for prefix, operations in (
        ("SageMaker", SAGEMAKER_OPERATIONS),
        ("AnyScaleFrontendService", AUTOSCALING_OPERATIONS),
        ("GraniteServiceVersion20100801", CLOUDWATCH_OPERATIONS),
        ("Modelhost", MODELHOST_OPERATIONS),
        ("Logs_20140328", LOGS_OPERATIONS),
    )
}


# The JSON protocols' validation error, as services that began on the query protocol
# (CloudWatch) name it: their clients have always caught ValidationError.
_QUERY_CODES = {"ValidationException": "ValidationError"}


def _lookup(target: str) -> tuple[OperationModel, Operation]:
    prefix, _, name = target.partition(".")
    if prefix not in _SERVICES:
        raise UnknownOperation(f"Unknown service target: {target!r}")
    service, operations = _SERVICES[prefix]
    model = service_model(service)
    if name not in operations:
        if name in model.operation_names:
            raise UnknownOperation(f"Operation {name} is not supported by modelhost.")
        raise UnknownOperation(f"Unknown operation: {name!r}")
    return model.operation_model(name), operations[name]


def handle(ctx: Context, target: str, body: bytes) -> tuple[int, bytes]:
    """Run one control-plane call; returns the status and the JSON body to send."""

    def decode() -> Any:
        try:
            return orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"Request body is not valid JSON: {exc}") from exc

    status, answer = call(ctx, target, decode)
    return status, orjson.dumps(answer)


def call(ctx: Context, target: str, decode: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    """Run one call whatever its wire format: `decode` turns the body into parameters
    (raising ValidationError when it cannot). Returns the status and the answer, or the
    error's body."""
    prefix = target.partition(".")[0]
    try:
        model, operation = _lookup(target)
        params = decode()
        validate_request(params, model.input_shape)
        return 200, operation(ctx, params)
    except SageMakerError as error:
        body = error.body()
        if prefix in _SERVICES and service_model(_SERVICES[prefix][0]).is_query_compatible:
            body["__type"] = _QUERY_CODES.get(error.code, error.code)
        return error.status, body
    except Exception:
        log.exception("control-plane call %s failed", target)
        failure = InternalFailure("An internal error occurred; see the modelhost server log.")
        return failure.status, failure.body()
