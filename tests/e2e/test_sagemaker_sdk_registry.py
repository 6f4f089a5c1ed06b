"""The model registry with the real sagemaker SDK against a real server, configured as a
user configures it: only AWS_ENDPOINT_URL (plus any key and a region) in the environment.
`Model.register()` finds or makes the group (through Search) and registers a version;
`ModelPackage(...).deploy()` approves it, makes a model from it and deploys that."""

from __future__ import annotations

import pytest

from tests.support.endpoints import deployed, unique
from tests.support.server import ServerProcess

# The SDK (2.257) cannot be pinned beside modelhost: its sagemaker-core 1.x requires
# rich<15, modelhost pins rich 15.0.0. Where it is installed anyway, this runs.
sagemaker = pytest.importorskip(
    "sagemaker", reason="the sagemaker SDK is not installed (its pins conflict with rich 15)"
)

ROLE = "arn:aws:iam::000000000000:role/any"

pytestmark = [
    # the SDK warns about its own deprecation path and about its config file lookups
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def test_register_then_deploy_from_the_registry(
    server: ServerProcess, iris_model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    from sagemaker.model import Model, ModelPackage
    from sagemaker.predictor import Predictor

    session = sagemaker.Session()
    group = unique("sdk-group")
    model = Model(
        image_uri="modelhost/sklearn",
        model_data=iris_model_url,
        role=ROLE,
        sagemaker_session=session,
    )
    first = model.register(
        content_types=["text/csv"],
        response_types=["text/csv"],
        inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"],
        model_package_group_name=group,
    )
    second = model.register(
        content_types=["text/csv"],
        response_types=["text/csv"],
        inference_instances=["ml.m5.large"],
        transform_instances=["ml.m5.large"],
        model_package_group_name=group,  # found by Search this time, not created again
    )
    assert first.model_package_arn.endswith(f"/{group}/1")
    assert second.model_package_arn.endswith(f"/{group}/2")
    client = session.sagemaker_client
    assert (
        client.describe_model_package(ModelPackageName=second.model_package_arn)[
            "ModelApprovalStatus"
        ]
        == "PendingManualApproval"
    )

    name = unique("sdk-pkg")
    package = ModelPackage(
        role=ROLE, model_package_arn=second.model_package_arn, sagemaker_session=session
    )
    deployed.append((client, name))
    package.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
    # deploying a versioned package approves it first, as on SageMaker
    assert (
        client.describe_model_package(ModelPackageName=second.model_package_arn)[
            "ModelApprovalStatus"
        ]
        == "Approved"
    )
    predictor = Predictor(name, sagemaker_session=session)
    answer = predictor.predict(b"5.1,3.5,1.4,0.2", initial_args={"ContentType": "text/csv"})
    assert answer.strip() == b"0"
