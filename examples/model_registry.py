"""The model registry: register two versions of a model in a package group, approve the
second, and deploy the latest approved version.

    python examples/model_registry.py    # against MODELHOST_URL
"""

from __future__ import annotations

from _common import ROLE, client, iris_joblib, put, tarball


def main() -> None:
    sm = client("sagemaker")
    group = "example-registry"
    url = put("s3://examples/registry/model.tar.gz", tarball({"model.joblib": iris_joblib()}))
    sm.create_model_package_group(
        ModelPackageGroupName=group, ModelPackageGroupDescription="iris classifiers"
    )
    versions = [
        sm.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification={
                "Containers": [{"Image": "modelhost/sklearn", "ModelDataUrl": url}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
                "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            },
        )["ModelPackageArn"]
        for _ in range(2)
    ]
    sm.update_model_package(ModelPackageArn=versions[1], ModelApprovalStatus="Approved")
    (latest,) = sm.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    print("deploying", latest["ModelPackageArn"])
    name = "example-registry"
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelPackageName": latest["ModelPackageArn"]},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        answer = client("sagemaker-runtime").invoke_endpoint(
            EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
        )
        print("prediction:", answer["Body"].read().decode().strip())
    finally:
        sm.delete_endpoint(EndpointName=name)
        sm.get_waiter("endpoint_deleted").wait(
            EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        sm.delete_endpoint_config(EndpointConfigName=name)
        sm.delete_model(ModelName=name)
        for arn in versions:
            sm.delete_model_package(ModelPackageName=arn)
        sm.delete_model_package_group(ModelPackageGroupName=group)


if __name__ == "__main__":
    main()
