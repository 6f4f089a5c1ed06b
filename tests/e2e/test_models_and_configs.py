"""Models and endpoint configs through boto3 against a real server: CRUD, tags, listing,
and the errors SageMaker gives for bad input."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from tests.support.endpoints import unique

IMAGE = "modelhost/sklearn"


def _model(sagemaker, url: str, name: str | None = None, **extra) -> str:
    name = name or unique("model")
    sagemaker.create_model(
        ModelName=name, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url}, **extra
    )
    return name


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def test_model_crud(sagemaker, iris_model_url: str) -> None:
    name = _model(sagemaker, iris_model_url, Tags=[{"Key": "team", "Value": "ds"}])
    described = sagemaker.describe_model(ModelName=name)
    assert described["ModelName"] == name
    assert described["PrimaryContainer"]["ModelDataUrl"] == iris_model_url
    assert described["ModelArn"].endswith(f":model/{name}")
    assert described["CreationTime"].year >= 2024
    assert sagemaker.list_tags(ResourceArn=described["ModelArn"])["Tags"] == [
        {"Key": "team", "Value": "ds"}
    ]
    sagemaker.delete_model(ModelName=name)
    with pytest.raises(ClientError) as excinfo:
        sagemaker.describe_model(ModelName=name)
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "Could not find model" in message and name in message


def test_duplicate_model_is_refused(sagemaker, iris_model_url: str) -> None:
    name = _model(sagemaker, iris_model_url)
    with pytest.raises(ClientError) as excinfo:
        _model(sagemaker, iris_model_url, name=name)
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "Cannot create already existing model" in message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (
            {"ModelName": "bad_name!", "PrimaryContainer": {"Image": IMAGE}},
            "regular expression pattern",
        ),
        (
            {"ModelName": "x" * 64, "PrimaryContainer": {"Image": IMAGE}},
            "length less than or equal to 63",
        ),
        (
            {"ModelName": "ok", "PrimaryContainer": {"Image": IMAGE, "Mode": "Sideways"}},
            "enum value set",
        ),
        ({"ModelName": "ok"}, "PrimaryContainer or Containers"),
    ],
)
def test_invalid_model_requests(sagemaker, params: dict, fragment: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model(**params)
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert fragment in message


def test_unknown_field_is_a_validation_error(server) -> None:
    """botocore refuses unknown fields client-side, so send the raw JSON ourselves."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        server.url,
        method="POST",
        data=json.dumps(
            {"ModelName": "m", "PrimaryContainer": {"Image": IMAGE}, "Bogus": 1}
        ).encode(),
        headers={
            "X-Amz-Target": "SageMaker.CreateModel",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request)
    assert excinfo.value.code == 400
    body = json.loads(excinfo.value.read())
    assert body["__type"] == "ValidationException"
    assert "Bogus" in body["message"]


def test_malformed_json_and_unknown_operation(server) -> None:
    import json
    import urllib.error
    import urllib.request

    for target, data, code in (
        ("SageMaker.CreateModel", b"{not json", "ValidationException"),
        ("SageMaker.DoSomethingElse", b"{}", "UnknownOperationException"),
        ("SageMaker.CreateTrainingJob", b"{}", "UnknownOperationException"),
    ):
        request = urllib.request.Request(
            server.url, method="POST", data=data, headers={"X-Amz-Target": target}
        )
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(request)
        assert excinfo.value.code == 400
        assert json.loads(excinfo.value.read())["__type"] == code


def test_client_side_validation_still_applies(sagemaker) -> None:
    with pytest.raises(ParamValidationError):
        sagemaker.create_model(ModelName="m", PrimaryContainer={"Image": 3})


def test_list_models_filters_sorting_and_paginator(sagemaker, iris_model_url: str) -> None:
    prefix = unique("listing")
    names = [_model(sagemaker, iris_model_url, name=f"{prefix}-{i}") for i in range(5)]
    page = sagemaker.list_models(
        NameContains=prefix, SortBy="Name", SortOrder="Ascending", MaxResults=2
    )
    assert [m["ModelName"] for m in page["Models"]] == names[:2]
    assert "NextToken" in page
    paginator = sagemaker.get_paginator("list_models")
    seen = [
        m["ModelName"]
        for p in paginator.paginate(NameContains=prefix, PaginationConfig={"PageSize": 2})
        for m in p["Models"]
    ]
    assert seen == list(reversed(names))  # default: CreationTime, Descending
    newest = sagemaker.describe_model(ModelName=names[-1])["CreationTime"]
    before = sagemaker.list_models(NameContains=prefix, CreationTimeBefore=newest)
    assert names[-1] not in [m["ModelName"] for m in before["Models"]]
    with pytest.raises(ClientError) as excinfo:
        sagemaker.list_models(NextToken="garbage!!")
    assert _error(excinfo)[0] == "ValidationException"


def test_endpoint_config_crud_and_errors(sagemaker, iris_model_url: str) -> None:
    model = _model(sagemaker, iris_model_url)
    name = unique("cfg")
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    arn = sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])[
        "EndpointConfigArn"
    ]
    described = sagemaker.describe_endpoint_config(EndpointConfigName=name)
    assert described["EndpointConfigArn"] == arn
    assert described["ProductionVariants"][0]["InitialVariantWeight"] == 1.0
    listed = sagemaker.list_endpoint_configs(NameContains=name)["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in listed] == [name]

    bad_cases = [
        ({**variant, "ModelName": "no-such-model"}, "Could not find model"),
        ({**variant, "InstanceType": "ml.m5.huge"}, "enum value set"),
        ({k: v for k, v in variant.items() if k != "InstanceType"}, "InstanceType"),
    ]
    for bad, fragment in bad_cases:
        with pytest.raises(ClientError) as excinfo:
            sagemaker.create_endpoint_config(
                EndpointConfigName=unique("cfg"), ProductionVariants=[bad]
            )
        code, message = _error(excinfo)
        assert code == "ValidationException" and fragment in message
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName=unique("cfg"), ProductionVariants=[variant, variant]
        )
    assert "unique" in _error(excinfo)[1]
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    assert "Cannot create already existing endpoint configuration" in _error(excinfo)[1]

    sagemaker.delete_endpoint_config(EndpointConfigName=name)
    with pytest.raises(ClientError) as excinfo:
        sagemaker.describe_endpoint_config(EndpointConfigName=name)
    assert "Could not find endpoint configuration" in _error(excinfo)[1]


def test_tags_add_list_delete(sagemaker, iris_model_url: str) -> None:
    arn = sagemaker.describe_model(ModelName=_model(sagemaker, iris_model_url))["ModelArn"]
    sagemaker.add_tags(
        ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    )
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "a", "Value": "3"}])
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [
        {"Key": "a", "Value": "3"},
        {"Key": "b", "Value": "2"},
    ]
    sagemaker.delete_tags(ResourceArn=arn, TagKeys=["a"])
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as excinfo:
        sagemaker.add_tags(
            ResourceArn=arn.replace("model/", "model/missing-"), Tags=[{"Key": "a", "Value": "1"}]
        )
    assert _error(excinfo)[0] == "ValidationException"


def test_local_model_locations_are_refused_by_default(sagemaker, tmp_path) -> None:
    """A caller who may create a model must not make the server read any file it can."""
    from tests.support.models import write_iris_tarball

    tarball = write_iris_tarball(tmp_path / "iris.tar.gz")
    for container in (
        {"ModelDataUrl": f"file://{tarball}"},
        {"ModelDataUrl": str(tarball)},
        {
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": str(tarball),
                    "S3DataType": "S3Object",
                    "CompressionType": "Gzip",
                }
            }
        },
    ):
        with pytest.raises(ClientError) as excinfo:
            sagemaker.create_model(
                ModelName=unique("m"), PrimaryContainer={"Image": IMAGE, **container}
            )
        code, message = _error(excinfo)
        assert code == "ValidationException"
        assert "local path" in message and "MODELHOST_ALLOW_LOCAL_PATHS" in message


def test_local_model_locations_are_accepted_when_allowed(tmp_path) -> None:
    """SageMaker allows only s3:// and https:// here; an operator may let modelhost read
    local files too, which is what a laptop deployment needs."""
    from tests.support.endpoints import deploy
    from tests.support.models import write_iris_tarball
    from tests.support.server import running_server

    tarball = write_iris_tarball(tmp_path / "iris.tar.gz")
    with running_server(tmp_path / "data", env={"MODELHOST_ALLOW_LOCAL_PATHS": "1"}) as server:
        sagemaker = server.client("sagemaker")
        runtime = server.client("sagemaker-runtime")
        for url in (f"file://{tarball}", str(tarball)):
            name = deploy(sagemaker, url)
            answer = runtime.invoke_endpoint(
                EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
            )
            assert answer["Body"].read().strip() == b"0"


def test_model_locations_must_be_s3_or_local(sagemaker) -> None:
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_model(
            ModelName=unique("m"), PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "ftp://x/y"}
        )
    assert "regular expression pattern" in _error(excinfo)[1]


def test_batch_data_capture_with_a_kms_key_is_refused(sagemaker, iris_model_url: str) -> None:
    """Captured data is not encrypted with a KMS key here: a client asking for it must
    learn so instead of finding its capture in the clear."""
    name = unique("capture")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": iris_model_url},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
    )
    with pytest.raises(ClientError) as caught:
        sagemaker.create_transform_job(
            TransformJobName=name,
            ModelName=name,
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://in/x/"}}
            },
            TransformOutput={"S3OutputPath": "s3://out/x/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
            DataCaptureConfig={"DestinationS3Uri": "s3://capture/batch", "KmsKeyId": "alias/k"},
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "DataCaptureConfig.KmsKeyId" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        sagemaker.describe_transform_job(TransformJobName=name)
