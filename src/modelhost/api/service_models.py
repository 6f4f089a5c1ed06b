"""botocore's service models of the APIs modelhost speaks, by X-Amz-Target prefix.

A leaf module: the protocol validates every request against these models and operations
(a transform schedule's job template, say) validate what they build against them too,
without importing the protocol that imports them.
"""

from __future__ import annotations

from functools import cache

import botocore.session
from botocore.model import OperationModel, ServiceModel

from modelhost.errors import UnknownOperation

#: X-Amz-Target prefix -> botocore service name.
SERVICE_NAMES = {
    "SageMaker": "sagemaker",
    "AnyScaleFrontendService": "application-autoscaling",
    "GraniteServiceVersion20100801": "cloudwatch",
}


@cache
def service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def operation_model(target: str) -> OperationModel:
    """botocore's model of a `Service.Operation` target (its request and answer shapes)."""
    prefix, _, name = target.partition(".")
    if prefix not in SERVICE_NAMES:
        raise UnknownOperation(f"Unknown service target: {target!r}")
    return service_model(SERVICE_NAMES[prefix]).operation_model(name)
