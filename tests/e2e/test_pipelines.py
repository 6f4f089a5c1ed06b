"""Multi-container endpoints end to end with boto3: a serial inference pipeline (scaler →
classifier → label mapper, trained now on iris) against the same three steps run in this
process, Direct invocation by TargetContainerHostname, and the errors SageMaker gives."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
from pathlib import Path

import joblib
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tests.support.endpoints import deploy, deploy_containers, unique, wait_for_status
from tests.support.models import iris_rows, put_model
from tests.support.processes import alive, instance_pids, kill_and_wait, wait_until

# Container 1, user code: CSV rows in, the scaled rows out as CSV.
SCALER_CODE = b"""
import io, os, joblib, numpy as np
def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "scaler.joblib"))
def input_fn(body, content_type):
    assert content_type == "text/csv", content_type
    return np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
def predict_fn(rows, scaler):
    return scaler.transform(rows)
def output_fn(scaled, accept):
    out = io.StringIO()
    np.savetxt(out, scaled, delimiter=",", fmt="%.17g")
    return out.getvalue(), "text/csv"
"""

# Container 3, user code: the classifier's JSON labels in, the species' names out. It
# insists on the Content-Type the classifier answered with.
MAPPER_CODE = b"""
import json, os
def model_fn(model_dir):
    with open(os.path.join(model_dir, "labels.json")) as f:
        return json.load(f)
def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError("mapper expects application/json, got " + str(content_type))
    return json.loads(body)
def predict_fn(labels, names):
    return [names[int(label)] for label in labels]
def output_fn(names, accept):
    return json.dumps({"species": names}), "application/json"
"""

BROKEN_CODE = b"""
def model_fn(model_dir):
    raise RuntimeError("the mapper cannot load")
def transform_fn(model, body, content_type, accept):
    return body
"""


def _joblib(value: object) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(value, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def steps() -> tuple[StandardScaler, LogisticRegression, list[str]]:
    features, labels = load_iris(return_X_y=True)
    scaler = StandardScaler().fit(features)
    classifier = LogisticRegression(max_iter=500).fit(scaler.transform(features), labels)
    return scaler, classifier, [str(n) for n in load_iris().target_names]


@pytest.fixture(scope="module")
def containers(server, steps) -> list[dict]:
    scaler, classifier, names = steps
    data = server.data_dir
    return [
        {
            "ContainerHostname": "scaler",
            "Image": "modelhost/python",
            "ModelDataUrl": put_model(
                data,
                "pipe-scaler",
                {"scaler.joblib": _joblib(scaler), "code/inference.py": SCALER_CODE},
            ),
        },
        {
            "ContainerHostname": "classifier",
            "Image": "modelhost/sklearn",
            "ModelDataUrl": put_model(
                data, "pipe-classifier", {"model.joblib": _joblib(classifier)}
            ),
            # What it answers an intermediate hop with (no Accept reaches it).
            "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"},
        },
        {
            "ContainerHostname": "mapper",
            "Image": "modelhost/python",
            "ModelDataUrl": put_model(
                data,
                "pipe-mapper",
                {"labels.json": json.dumps(names).encode(), "code/inference.py": MAPPER_CODE},
            ),
        },
    ]


def _csv(rows: list[list[float]]) -> str:
    return "\n".join(",".join(repr(v) for v in row) for row in rows)


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def test_serial_pipeline_returns_what_the_three_steps_return(
    sagemaker, runtime, containers, steps
) -> None:
    scaler, classifier, names = steps
    name = deploy_containers(sagemaker, containers)
    rows = iris_rows(6)
    expected = json.dumps(
        {"species": [names[int(label)] for label in classifier.predict(scaler.transform(rows))]}
    )

    response = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=_csv(rows)
    )
    assert response["ContentType"] == "application/json"
    assert response["Body"].read().decode() == expected

    model = sagemaker.describe_model(ModelName=name)
    assert [c["ContainerHostname"] for c in model["Containers"]] == [
        "scaler",
        "classifier",
        "mapper",
    ]
    assert model["InferenceExecutionConfig"] == {"Mode": "Serial"}
    assert "PrimaryContainer" not in model
    endpoint = sagemaker.describe_endpoint(EndpointName=name)
    images = [i["SpecifiedImage"] for i in endpoint["ProductionVariants"][0]["DeployedImages"]]
    assert images == ["modelhost/python", "modelhost/sklearn", "modelhost/python"]

    # A serial pipeline takes no TargetContainerHostname, as SageMaker refuses it.
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=name,
            ContentType="text/csv",
            TargetContainerHostname="classifier",
            Body=_csv(rows),
        )
    code, message = _error(excinfo)
    assert code == "ValidationError"
    assert "not configured for direct invocation" in message

    # An error in the middle container is a ModelError naming it: NaN passes the scaler
    # and the classifier refuses it.
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="nan,1,2,3")
    code, message = _error(excinfo)
    assert code == "ModelError"
    assert "container classifier" in message
    assert excinfo.value.response["OriginalStatusCode"] >= 400


def test_a_serverless_pipeline_starts_on_its_first_request(
    sagemaker, runtime, containers, steps
) -> None:
    scaler, classifier, names = steps
    name = deploy_containers(
        sagemaker, containers, serverless={"MemorySizeInMB": 2048, "MaxConcurrency": 2}
    )
    rows = iris_rows(2)
    response = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=_csv(rows)
    )
    wanted = [names[int(label)] for label in classifier.predict(scaler.transform(rows))]
    assert json.loads(response["Body"].read()) == {"species": wanted}


def test_direct_invocation_by_hostname(sagemaker, runtime, containers, steps) -> None:
    scaler, classifier, names = steps
    name = deploy_containers(sagemaker, containers, mode="Direct")
    rows = iris_rows(3)

    scaled = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="text/csv",
        TargetContainerHostname="scaler",
        Body=_csv(rows),
    )
    assert scaled["ContentType"] == "text/csv"
    values = [
        [float(v) for v in line.split(",")] for line in scaled["Body"].read().decode().split()
    ]
    assert values == scaler.transform(rows).tolist()

    labels = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="application/json",
        Accept="application/json",
        TargetContainerHostname="classifier",
        Body=json.dumps(values),
    )
    assert json.loads(labels["Body"].read()) == classifier.predict(values).tolist()

    mapped = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="application/json",
        TargetContainerHostname="mapper",
        Body=json.dumps([2, 0, 1]),
    )
    assert json.loads(mapped["Body"].read()) == {"species": [names[2], names[0], names[1]]}

    assert sagemaker.describe_model(ModelName=name)["InferenceExecutionConfig"] == {
        "Mode": "Direct"
    }
    for target, wanted in ((None, "must name one of its containers"), ("nope", "nope")):
        with pytest.raises(ClientError) as excinfo:
            runtime.invoke_endpoint(
                EndpointName=name,
                ContentType="text/csv",
                Body=_csv(rows),
                **({"TargetContainerHostname": target} if target else {}),
            )
        code, message = _error(excinfo)
        assert code == "ValidationError"
        assert wanted in message
        assert "scaler, classifier, mapper" in message


def test_target_container_on_a_single_container_endpoint_is_refused(
    sagemaker, runtime, iris_model_url
) -> None:
    name = deploy(sagemaker, iris_model_url)
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=name,
            ContentType="text/csv",
            TargetContainerHostname="anything",
            Body=_csv(iris_rows(1)),
        )
    code, message = _error(excinfo)
    assert code == "ValidationError"
    assert "not configured for direct invocation" in message


def test_a_container_that_cannot_start_fails_the_endpoint_naming_it(
    sagemaker, server, containers
) -> None:
    broken = {
        "ContainerHostname": "mapper",
        "Image": "modelhost/python",
        "ModelDataUrl": put_model(
            server.data_dir, "pipe-broken", {"code/inference.py": BROKEN_CODE}
        ),
    }
    name = deploy_containers(sagemaker, [*containers[:2], broken], wait=False)
    described = wait_for_status(sagemaker, name, {"InService", "Failed"}, 120)
    assert described["EndpointStatus"] == "Failed"
    assert "container mapper" in described["FailureReason"]
    assert "the mapper cannot load" in described["FailureReason"]


def test_pipeline_models_are_checked_when_created(sagemaker, containers) -> None:
    def create(**fields) -> tuple[str, str]:
        with pytest.raises(ClientError) as excinfo:
            sagemaker.create_model(
                ModelName="pipe-invalid",
                ExecutionRoleArn="arn:aws:iam::000000000000:role/any",
                **fields,
            )
        return _error(excinfo)

    nameless = [{k: v for k, v in c.items() if k != "ContainerHostname"} for c in containers]
    code, message = create(Containers=nameless, InferenceExecutionConfig={"Mode": "Direct"})
    assert code == "ValidationException"
    assert "ContainerHostname" in message
    code, message = create(Containers=[containers[0], containers[0]])
    assert code == "ValidationException"
    assert "ContainerHostname scaler" in message
    code, message = create(
        Containers=[{**containers[0], "ContainerHostname": "container-2"}, nameless[1]]
    )
    assert code == "ValidationException"
    assert "ContainerHostname container-2" in message


def _container_pids(server, endpoint: str) -> dict[str, int]:
    """Each running container's model server, by hostname: the process whose output goes
    to the container's own log, `<variant>-<n>.<hostname>.log`."""
    found = {}
    for pid in instance_pids(server.pid, endpoint):
        with contextlib.suppress(OSError):
            log = os.readlink(f"/proc/{pid}/fd/1")
            found[log.rsplit(".", 2)[-2]] = pid
    return found


def test_a_killed_container_ends_and_replaces_its_whole_instance(
    sagemaker, runtime, server, containers, steps
) -> None:
    scaler, classifier, names = steps
    name = deploy_containers(sagemaker, containers)
    pids = _container_pids(server, name)
    assert sorted(pids) == ["classifier", "mapper", "scaler"]
    # One instance, one set of limits: the three share the instance's control group.
    groups = {Path(f"/proc/{pid}/cgroup").read_text() for pid in pids.values()}
    assert len(groups) == 1
    group = None
    if "without control groups" not in server.log():
        found = re.search(
            rf"^\d+:([\w,]*):(/modelhost/\w+/{name}-AllTraffic-\d+\.\S+)$",
            groups.pop(),
            re.M,
        )
        assert found is not None
        # v1 mounts each controller (the first named) under /sys/fs/cgroup; v2 is the root
        controller = found.group(1).split(",")[0]
        group = Path("/sys/fs/cgroup", controller) / found.group(2).lstrip("/")
        if not group.is_dir():  # mounted elsewhere on this machine: nothing to watch
            group = None

    kill_and_wait(pids["classifier"])
    wait_until(
        lambda: not alive(pids["scaler"]) and not alive(pids["mapper"]),
        what="the other containers of the instance to end",
    )
    if group is not None:  # the dead instance's group goes with it
        wait_until(lambda: not group.exists(), what=f"{group} to be removed")
    wait_until(
        lambda: sorted(_container_pids(server, name)) == ["classifier", "mapper", "scaler"],
        what="a replacement instance",
    )
    rows = iris_rows(3)
    response = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=_csv(rows)
    )
    wanted = [names[int(label)] for label in classifier.predict(scaler.transform(rows))]
    assert json.loads(response["Body"].read()) == {"species": wanted}


def test_a_hung_middle_container_fails_the_health_check(
    sagemaker, runtime, server, containers
) -> None:
    """SIGSTOP on the classifier: its port still takes connections but nothing answers.
    The health check pings every container, so the instance is condemned and replaced
    even though its first container answers."""
    name = deploy_containers(sagemaker, containers)
    pids = _container_pids(server, name)
    os.kill(pids["classifier"], signal.SIGSTOP)
    try:
        wait_until(
            lambda: not alive(pids["classifier"]),
            timeout_s=30,
            what="the hung container to be killed",
        )
        wait_until(
            lambda: sorted(_container_pids(server, name)) == ["classifier", "mapper", "scaler"],
            timeout_s=30,
            what="a replacement instance",
        )
    finally:
        if alive(pids["classifier"]):
            os.kill(pids["classifier"], signal.SIGCONT)
    assert not set(pids.values()) & set(_container_pids(server, name).values())
    response = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1))
    )
    assert json.loads(response["Body"].read())["species"]


def test_streaming_async_and_transform_refuse_pipelines(sagemaker, runtime, containers) -> None:
    name = deploy_containers(sagemaker, containers)
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_with_response_stream(
            EndpointName=name, ContentType="text/csv", Body=_csv(iris_rows(1))
        )
    code, message = _error(excinfo)
    assert code == "ValidationError"
    assert "multi-container" in message

    config = unique("pipe-async")
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://out/async/"}},
    )
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=config, EndpointConfigName=config)
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "several containers" in message

    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_transform_job(
            TransformJobName=unique("pipe-job"),
            ModelName=name,
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://in/x/"}}
            },
            TransformOutput={"S3OutputPath": "s3://out/x/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
    code, message = _error(excinfo)
    assert code == "ValidationException"
    assert "several containers" in message


def test_a_pipeline_mixing_processes_and_containers_is_refused_naming_them(
    sagemaker, containers
) -> None:
    custom = {**containers[1], "Image": "example.com/team/custom:1"}
    name = deploy_containers(sagemaker, [containers[0], custom], wait=False)
    described = wait_for_status(sagemaker, name, {"InService", "Failed"}, 120)
    assert described["EndpointStatus"] == "Failed"
    assert "container classifier" in described["FailureReason"]
    assert "container scaler as a process" in described["FailureReason"]
