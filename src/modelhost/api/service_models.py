"""The botocore service models the control plane serves, by X-Amz-Target prefix:
botocore's own (SageMaker, Application Auto Scaling, CloudWatch) and modelhost's
(`Modelhost.*`), shipped as a botocore data folder (`data/modelhost/<version>/service-2.json`).

One loader finds both, so modelhost's operations are validated by the same code as
SageMaker's, and any botocore client can load the folder to call them:
`AWS_DATA_PATH=<DATA_PATH>` or `session.get_component("data_loader").search_paths`.

A leaf module: the protocol validates every request against these models, and operations
(a transform schedule's job template, say) validate what they build against them too,
without importing the protocol that imports them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import botocore.session
from botocore.model import OperationModel, ServiceModel

from modelhost.errors import UnknownOperation

DATA_PATH = Path(__file__).with_name("data")

#: X-Amz-Target prefix -> botocore service name.
SERVICE_NAMES = {
    "SageMaker": "sagemaker",
    "AnyScaleFrontendService": "application-autoscaling",
    "GraniteServiceVersion20100801": "cloudwatch",
    "Modelhost": "modelhost",
    "Logs_20140328": "logs",
}


@cache
def session() -> botocore.session.Session:
    """A botocore session whose loader also searches modelhost's data folder."""
    loaded = botocore.session.get_session()
    loaded.get_component("data_loader").search_paths.append(str(DATA_PATH))
    return loaded


@cache
def service_model(service: str) -> ServiceModel:
    return session().get_service_model(service)


def operation_model(target: str) -> OperationModel:
    """botocore's model of a `Service.Operation` target (its request and answer shapes)."""
    prefix, _, name = target.partition(".")
    if prefix not in SERVICE_NAMES:
        raise UnknownOperation(f"Unknown service target: {target!r}")
    model = service_model(SERVICE_NAMES[prefix])
    if name not in model.operation_names:
        raise UnknownOperation(f"Unknown operation: {name!r}")
    return model.operation_model(name)
