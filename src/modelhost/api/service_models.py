"""The botocore service models the control plane serves: botocore's own (SageMaker,
Application Auto Scaling, CloudWatch) and modelhost's (`Modelhost.*`), shipped as a
botocore data folder (`data/modelhost/<version>/service-2.json`).

One loader finds both, so modelhost's operations are validated by the same code as
SageMaker's, and any botocore client can load the folder to call them:
`AWS_DATA_PATH=<DATA_PATH>` or `session.get_component("data_loader").search_paths`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import botocore.session
from botocore.model import ServiceModel

DATA_PATH = Path(__file__).with_name("data")


@cache
def session() -> botocore.session.Session:
    """A botocore session whose loader also searches modelhost's data folder."""
    loaded = botocore.session.get_session()
    loaded.get_component("data_loader").search_paths.append(str(DATA_PATH))
    return loaded


@cache
def service_model(service: str) -> ServiceModel:
    return session().get_service_model(service)
