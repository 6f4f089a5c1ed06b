"""The model registry through boto3 against a real server: package groups, versioned and
unversioned packages, approval, listing and Search as SageMaker pages them, a Model made
from a package (deployed and invoked), and a recommendation job on a package version."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deployed, unique, wait_for, wait_for_status
from tests.support.models import model_tarball

ROLE = "arn:aws:iam::000000000000:role/any"


def _spec(url: str, **extra: object) -> dict:
    return {
        "Containers": [
            {
                "Image": "modelhost/sklearn",
                "ModelDataUrl": url,
                "Environment": {"FROM_PACKAGE": "1"},
            }
        ],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
        "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
        "SupportedTransformInstanceTypes": ["ml.m5.large"],
        **extra,
    }


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.fixture
def group(sagemaker):
    name = unique("Group")
    sagemaker.create_model_package_group(
        ModelPackageGroupName=name,
        ModelPackageGroupDescription="iris classifiers",
        Tags=[{"Key": "team", "Value": "ds"}],
    )
    yield name
    for summary in sagemaker.list_model_packages(ModelPackageGroupName=name, MaxResults=100)[
        "ModelPackageSummaryList"
    ]:
        sagemaker.delete_model_package(ModelPackageName=summary["ModelPackageArn"])
    sagemaker.delete_model_package_group(ModelPackageGroupName=name)


def test_versions_are_numbered_per_group(sagemaker, group: str, iris_model_url: str) -> None:
    described = sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    assert described["ModelPackageGroupStatus"] == "Completed"
    assert described["ModelPackageGroupArn"].endswith(f":model-package-group/{group.lower()}")
    assert sagemaker.list_tags(ResourceArn=described["ModelPackageGroupArn"])["Tags"] == [
        {"Key": "team", "Value": "ds"}
    ]
    arns = [
        sagemaker.create_model_package(
            ModelPackageGroupName=group, InferenceSpecification=_spec(iris_model_url)
        )["ModelPackageArn"]
        for _ in range(3)
    ]
    assert arns == [
        described["ModelPackageGroupArn"].replace("model-package-group/", "model-package/")
        + f"/{n}"
        for n in (1, 2, 3)
    ]
    package = sagemaker.describe_model_package(ModelPackageName=arns[1])
    assert package["ModelPackageName"] == group
    assert package["ModelPackageVersion"] == 2
    assert package["ModelPackageStatus"] == "Completed"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["InferenceSpecification"] == _spec(iris_model_url)

    # the group cannot go while it has versions
    with pytest.raises(ClientError) as excinfo:
        sagemaker.delete_model_package_group(ModelPackageGroupName=group)
    assert _error(excinfo)[0] == "ValidationException"


def test_approval_listing_and_pagination(sagemaker, group: str, iris_model_url: str) -> None:
    arns = [
        sagemaker.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification=_spec(iris_model_url),
            ModelApprovalStatus="PendingManualApproval",
        )["ModelPackageArn"]
        for _ in range(5)
    ]
    sagemaker.update_model_package(
        ModelPackageArn=arns[3],
        ModelApprovalStatus="Approved",
        ApprovalDescription="passed review",
        CustomerMetadataProperties={"owner": "ds"},
    )
    updated = sagemaker.describe_model_package(ModelPackageName=arns[3])
    assert updated["ModelApprovalStatus"] == "Approved"
    assert updated["ApprovalDescription"] == "passed review"
    assert updated["CustomerMetadataProperties"] == {"owner": "ds"}
    assert updated["LastModifiedTime"] >= updated["CreationTime"]

    approved = sagemaker.list_model_packages(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved"
    )["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in approved] == [arns[3]]

    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group,
        SortBy="CreationTime",
        SortOrder="Ascending",
        PaginationConfig={"PageSize": 2},
    )
    listed = [p for page in pages for p in page["ModelPackageSummaryList"]]
    assert [p["ModelPackageVersion"] for p in listed] == [1, 2, 3, 4, 5]
    # unversioned packages are what a plain listing shows; the group's versions are not
    plain = sagemaker.list_model_packages(NameContains=group)["ModelPackageSummaryList"]
    assert plain == []

    groups = sagemaker.list_model_package_groups(NameContains=group)
    assert [g["ModelPackageGroupName"] for g in groups["ModelPackageGroupSummaryList"]] == [group]


def test_search_finds_groups_and_packages(sagemaker, group: str, iris_model_url: str) -> None:
    for status in ("Approved", "Rejected", "Approved"):
        sagemaker.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification=_spec(iris_model_url),
            ModelApprovalStatus=status,
        )
    found = sagemaker.search(
        Resource="ModelPackageGroup",
        SearchExpression={
            "Filters": [{"Name": "ModelPackageGroupName", "Operator": "Equals", "Value": group}]
        },
    )
    assert [r["ModelPackageGroup"]["ModelPackageGroupName"] for r in found["Results"]] == [group]
    newest_approved: dict[str, Any] = {
        "Resource": "ModelPackage",
        "SearchExpression": {
            "Filters": [
                {"Name": "ModelPackageGroupName", "Operator": "Equals", "Value": group},
                {"Name": "ModelApprovalStatus", "Operator": "Equals", "Value": "Approved"},
            ]
        },
        "SortBy": "ModelPackageVersion",
        "SortOrder": "Descending",
        "MaxResults": 1,
    }
    approved = sagemaker.search(**newest_approved)
    assert [r["ModelPackage"]["ModelPackageVersion"] for r in approved["Results"]] == [3]
    rest = sagemaker.search(**newest_approved, NextToken=approved["NextToken"])
    assert [r["ModelPackage"]["ModelPackageVersion"] for r in rest["Results"]] == [1]
    with pytest.raises(ClientError) as excinfo:
        sagemaker.search(Resource="TrainingJob")
    code, message = _error(excinfo)
    assert code == "ValidationException" and "TrainingJob" in message


def test_unversioned_package(sagemaker, iris_model_url: str) -> None:
    name = unique("pkg")
    arn = sagemaker.create_model_package(
        ModelPackageName=name,
        ModelPackageDescription="one iris model",
        InferenceSpecification=_spec(iris_model_url),
    )["ModelPackageArn"]
    assert arn.endswith(f":model-package/{name}")
    described = sagemaker.describe_model_package(ModelPackageName=name)
    assert described["ModelPackageArn"] == arn
    assert "ModelPackageVersion" not in described
    listed = sagemaker.list_model_packages(NameContains=name)["ModelPackageSummaryList"]
    assert [p["ModelPackageArn"] for p in listed] == [arn]
    sagemaker.delete_model_package(ModelPackageName=arn)
    with pytest.raises(ClientError) as excinfo:
        sagemaker.describe_model_package(ModelPackageName=name)
    assert _error(excinfo)[0] == "ValidationException"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (
            {"ValidationSpecification": {"ValidationRole": ROLE, "ValidationProfiles": []}},
            "ValidationSpecification",
        ),
        ({"CertifyForMarketplace": True}, "CertifyForMarketplace"),
        ({"SecurityConfig": {"KmsKeyId": "key"}}, "SecurityConfig"),
    ],
)
def test_unimplemented_fields_are_refused_by_name(
    sagemaker, group: str, iris_model_url: str, extra: dict, named: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model_package(
            ModelPackageGroupName=group, InferenceSpecification=_spec(iris_model_url), **extra
        )
    code, message = _error(excinfo)
    assert code == "ValidationException" and named in message
    assert (
        sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"] == []
    )


def test_a_version_must_be_approved_before_a_model_runs_it(
    sagemaker, group: str, iris_model_url: str
) -> None:
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=_spec(iris_model_url)
    )["ModelPackageArn"]
    name = unique("unapproved")
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model(
            ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": arn}
        )
    code, message = _error(excinfo)
    assert code == "ValidationException" and "must be Approved" in message
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    sagemaker.create_model(
        ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": arn}
    )
    sagemaker.delete_model(ModelName=name)


def test_a_version_takes_its_groups_tags(sagemaker, group: str, iris_model_url: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model_package(
            ModelPackageGroupName=group,
            InferenceSpecification=_spec(iris_model_url),
            Tags=[{"Key": "k", "Value": "v"}],
        )
    code, message = _error(excinfo)
    assert code == "ValidationException" and "Tags" in message


def test_unimplemented_container_fields_are_refused(
    sagemaker, group: str, iris_model_url: str
) -> None:
    spec = _spec(iris_model_url)
    spec["Containers"][0]["ProductId"] = "marketplace-product"
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model_package(ModelPackageGroupName=group, InferenceSpecification=spec)
    code, message = _error(excinfo)
    assert code == "ValidationException" and "ProductId" in message


def test_model_from_a_package_deploys_and_answers(
    sagemaker, runtime, group: str, iris_model_url: str
) -> None:
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification=_spec(iris_model_url),
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    name = unique("from-pkg")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelPackageName": arn, "Environment": {"EXTRA": "yes"}},
    )
    container = sagemaker.describe_model(ModelName=name)["PrimaryContainer"]
    assert container["Image"] == "modelhost/sklearn"
    assert container["ModelDataUrl"] == iris_model_url
    assert container["Environment"] == {"FROM_PACKAGE": "1", "EXTRA": "yes"}
    assert container["ModelPackageName"] == arn
    sagemaker.create_endpoint_config(
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
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deployed.append((sagemaker, name))
    status = wait_for_status(sagemaker, name, {"InService", "Failed"})
    assert status["EndpointStatus"] == "InService", status.get("FailureReason")
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body=b"5.1,3.5,1.4,0.2"
    )
    assert answer["Body"].read().strip() == b"0"

    # an image or artifacts beside ModelPackageName are the package's to give
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model(
            ModelName=unique("both"),
            PrimaryContainer={"ModelPackageName": arn, "Image": "modelhost/python"},
        )
    code, message = _error(excinfo)
    assert code == "ValidationException" and "Image" in message
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model(
            ModelName=unique("missing"),
            PrimaryContainer={"ModelPackageName": arn.rpartition("/")[0] + "/99"},
        )
    assert _error(excinfo)[0] == "ValidationException"


def test_recommender_job_on_a_package_version(
    sagemaker, server, group: str, iris_model_url: str
) -> None:
    payloads = server.data_dir / "objects" / "payloads" / "registry" / "payloads.tar.gz"
    payloads.parent.mkdir(parents=True, exist_ok=True)
    payloads.write_bytes(model_tarball({"a.csv": b"5.1,3.5,1.4,0.2\n"}))
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=_spec(iris_model_url)
    )["ModelPackageArn"]
    job = unique("pkg-rec")
    sagemaker.create_inference_recommendations_job(
        JobName=job,
        JobType="Default",
        RoleArn=ROLE,
        InputConfig={
            "ModelPackageVersionArn": arn,
            "JobDurationInSeconds": 600,
            "ContainerConfig": {
                "PayloadConfig": {
                    "SamplePayloadUrl": "s3://payloads/registry/payloads.tar.gz",
                    "SupportedContentTypes": ["text/csv"],
                },
            },
            "EndpointConfigurations": [{"InstanceType": "ml.m5.large"}],
            "TrafficPattern": {
                "TrafficType": "PHASES",
                "Phases": [{"InitialNumberOfUsers": 1, "SpawnRate": 0, "DurationInSeconds": 1}],
            },
        },
    )
    done = wait_for(
        lambda: sagemaker.describe_inference_recommendations_job(JobName=job),
        "Status",
        {"COMPLETED", "FAILED"},
        f"job {job}",
        240,
    )
    assert done["Status"] == "COMPLETED", done.get("FailureReason")
    (best,) = done["InferenceRecommendations"]
    assert best["EndpointConfiguration"]["InstanceType"] == "ml.m5.large"
    listed = sagemaker.list_inference_recommendations_jobs(ModelPackageVersionArnEquals=arn)
    assert [j["JobName"] for j in listed["InferenceRecommendationsJobs"]] == [job]
    assert listed["InferenceRecommendationsJobs"][0]["ModelPackageVersionArn"] == arn
    # the temporary model the job measured went with its endpoint
    models = sagemaker.list_models(NameContains="recommender-", MaxResults=100)["Models"]
    tags = [sagemaker.list_tags(ResourceArn=m["ModelArn"])["Tags"] for m in models]
    assert not [t for t in tags if {"Key": "modelhost:recommendation-job", "Value": job} in t]


def test_policies_name_registry_resources(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key allowed only on one group's resources may use that group and its versions,
    not another group's."""
    import json

    import boto3

    from tests.support.server import ServerProcess

    policy = {
        "AKIDTEAM": {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sagemaker:*",
                    "Resource": [
                        "arn:aws:sagemaker:*:*:model-package-group/team-a*",
                        "arn:aws:sagemaker:*:*:model-package/team-a*",
                    ],
                }
            ]
        }
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    server = ServerProcess(
        tmp_path / "data",
        env={
            "MODELHOST_ACCESS_KEYS": "AKIDTEAM:team-secret",
            "MODELHOST_POLICY_FILE": str(tmp_path / "policy.json"),
        },
    ).start()
    try:
        team = boto3.client(
            "sagemaker",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="AKIDTEAM",
            aws_secret_access_key="team-secret",
        )
        team.create_model_package_group(ModelPackageGroupName="team-a-models")
        arn = team.create_model_package(
            ModelPackageGroupName="team-a-models",
            InferenceSpecification=_spec("s3://models/iris/model.tar.gz"),
        )["ModelPackageArn"]
        team.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
        assert team.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == (
            "Approved"
        )
        with pytest.raises(ClientError) as denied:
            team.create_model_package_group(ModelPackageGroupName="team-b-models")
        assert _error(denied)[0] == "AccessDeniedException"
    finally:
        server.stop()
