"""The inference recommender end to end: boto3 against a real server, real instances,
real load. Traffic phases are 1 s so each job takes seconds."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.support.cli import run_cli
from tests.support.endpoints import unique, wait_for
from tests.support.models import model_tarball, put_iris_model, write_iris_tarball
from tests.support.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/any"
PAYLOAD_URL = "s3://payloads/iris/payloads.tar.gz"


@pytest.fixture(scope="module")
def model(sagemaker, server: ServerProcess, iris_model_url: str) -> str:
    name = unique("rec-model")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": iris_model_url},
    )
    payloads = server.data_dir / "objects" / "payloads" / "iris" / "payloads.tar.gz"
    payloads.parent.mkdir(parents=True, exist_ok=True)
    payloads.write_bytes(
        model_tarball(
            {"a.csv": b"5.1,3.5,1.4,0.2\n", "b.csv": b"6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n"}
        )
    )
    yield name
    sagemaker.delete_model(ModelName=name)


def _input(model: str, **extra: object) -> dict:
    return {
        "ModelName": model,
        "ContainerConfig": {
            "Domain": "MACHINE_LEARNING",
            "Framework": "SAGEMAKER-SCIKIT-LEARN",
            "PayloadConfig": {
                "SamplePayloadUrl": PAYLOAD_URL,
                "SupportedContentTypes": ["text/csv"],
            },
        },
        **extra,
    }


def _phases(*users_and_seconds: tuple[int, int]) -> dict:
    return {
        "TrafficType": "PHASES",
        "Phases": [
            {"InitialNumberOfUsers": users, "SpawnRate": 0, "DurationInSeconds": seconds}
            for users, seconds in users_and_seconds
        ],
    }


def _wait_job(sagemaker, name: str, wanted: set[str], timeout_s: float = 180) -> dict:
    return wait_for(
        lambda: sagemaker.describe_inference_recommendations_job(JobName=name),
        "Status",
        wanted,
        f"job {name}",
        timeout_s,
    )


def _temporary_endpoints(sagemaker) -> list[str]:
    pages = sagemaker.get_paginator("list_endpoints").paginate(NameContains="recommender-")
    return [e["EndpointName"] for page in pages for e in page["Endpoints"]]


SERVERLESS = {"MemorySizeInMB": 2048, "MaxConcurrency": 4}


def _check_costs(metrics: dict) -> None:
    """Both kinds of candidate: an inference costs an hour's cost over an hour of
    inferences at the recommended throughput."""
    assert metrics["MaxInvocations"] > 0 and metrics["CostPerHour"] > 0
    assert metrics["CostPerInference"] == pytest.approx(
        metrics["CostPerHour"] / (metrics["MaxInvocations"] * 60)
    )


def _completed_job(sagemaker, name: str, model: str, candidates: list[dict]) -> dict:
    """An Advanced job of two 1 s traffic steps with a P95 bound of 2 s, run to COMPLETED."""
    sagemaker.create_inference_recommendations_job(
        JobName=name,
        JobType="Advanced",
        RoleArn=ROLE,
        InputConfig=_input(
            model, TrafficPattern=_phases((1, 1), (2, 1)), EndpointConfigurations=candidates
        ),
        StoppingConditions={
            "ModelLatencyThresholds": [{"Percentile": "P95", "ValueInMilliseconds": 2000}]
        },
    )
    job = _wait_job(sagemaker, name, {"COMPLETED", "FAILED"})
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    return job


def test_advanced_job_recommends_the_cheapest_candidate_first(sagemaker, server, model):
    name = unique("rec")
    job = _completed_job(
        sagemaker, name, model, [{"InstanceType": "ml.m5.xlarge"}, {"InstanceType": "ml.c5.large"}]
    )
    recommendations = job["InferenceRecommendations"]
    assert sorted(r["EndpointConfiguration"]["InstanceType"] for r in recommendations) == [
        "ml.c5.large",
        "ml.m5.xlarge",
    ]
    # Cheapest per inference first. Which type that is depends on the throughput each
    # reached on this (possibly busy) machine, so the order is checked, not the winner.
    costs = [r["Metrics"]["CostPerInference"] for r in recommendations]
    assert costs == sorted(costs)
    for recommendation in recommendations:
        metrics = recommendation["Metrics"]
        assert 1 <= metrics["ModelLatency"] <= 2000
        _check_costs(metrics)
        assert metrics["CpuUtilization"] > 0 and 0 < metrics["MemoryUtilization"] < 100
    steps = sagemaker.list_inference_recommendations_job_steps(JobName=name)["Steps"]
    assert [s["Status"] for s in steps] == ["COMPLETED", "COMPLETED"]
    assert all(s["InferenceBenchmark"]["EndpointMetrics"]["MaxInvocations"] > 0 for s in steps)
    assert _temporary_endpoints(sagemaker) == []
    listed = sagemaker.list_inference_recommendations_jobs(ModelNameEquals=model)
    assert name in [j["JobName"] for j in listed["InferenceRecommendationsJobs"]]
    with urllib.request.urlopen(
        f"{server.url}/inference-recommendations-jobs/{name}/load-curves"
    ) as response:
        curves = json.load(response)
    assert [len(c["Points"]) for c in curves["Candidates"]] == [2, 2]


def test_serverless_candidate_is_benchmarked_next_to_an_instance(sagemaker, server, model):
    name = unique("rec-serverless")
    job = _completed_job(
        sagemaker, name, model, [{"InstanceType": "ml.c5.large"}, {"ServerlessConfig": SERVERLESS}]
    )
    by_kind = {
        (
            "serverless"
            if "ServerlessConfig" in r["EndpointConfiguration"]
            else r["EndpointConfiguration"]["InstanceType"]
        ): r
        for r in job["InferenceRecommendations"]
    }
    assert set(by_kind) == {"ml.c5.large", "serverless"}
    serverless = by_kind["serverless"]
    assert serverless["EndpointConfiguration"]["ServerlessConfig"] == SERVERLESS
    for recommendation in by_kind.values():
        _check_costs(recommendation["Metrics"])
    # Billed at USD 0.00002 per GB-second: the GB-seconds of one inference at 2 GB are
    # a request's duration on its instance, under the latency bound.
    billed_s = serverless["Metrics"]["CostPerInference"] / 0.00002 / 2
    assert 0 < billed_s * 1000 <= 2000
    assert serverless["Metrics"]["CpuUtilization"] > 0
    assert 0 < serverless["Metrics"]["MemoryUtilization"] < 100
    assert serverless["Metrics"]["ModelSetupTime"] >= 1  # includes the cold start
    steps = sagemaker.list_inference_recommendations_job_steps(JobName=name)["Steps"]
    assert [s["Status"] for s in steps] == ["COMPLETED", "COMPLETED"]
    assert _temporary_endpoints(sagemaker) == []


def test_serverless_candidate_with_signed_requests_required(tmp_path, iris_model_url):
    """With access keys the load goes through the router unsigned, carrying the server's
    own secret; an unsigned request from outside is still refused."""
    data = tmp_path / "data"
    server = ServerProcess(data, env={"MODELHOST_ACCESS_KEYS": "testing:testing"}).start()
    try:
        sagemaker = server.client("sagemaker")
        write_iris_tarball(data / "objects" / "models" / "iris.tar.gz")
        sagemaker.create_model(
            ModelName="iris",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "modelhost/sklearn",
                "ModelDataUrl": "s3://models/iris.tar.gz",
            },
        )
        payloads = data / "objects" / "payloads" / "iris" / "payloads.tar.gz"
        payloads.parent.mkdir(parents=True)
        payloads.write_bytes(model_tarball({"a.csv": b"5.1,3.5,1.4,0.2\n"}))
        sagemaker.create_inference_recommendations_job(
            JobName="signed",
            JobType="Advanced",
            RoleArn=ROLE,
            InputConfig=_input(
                "iris",
                TrafficPattern=_phases((1, 1)),
                EndpointConfigurations=[{"ServerlessConfig": SERVERLESS}],
            ),
        )
        job = _wait_job(sagemaker, "signed", {"COMPLETED", "FAILED"})
        assert job["Status"] == "COMPLETED", job.get("FailureReason")
        _check_costs(job["InferenceRecommendations"][0]["Metrics"])
        sagemaker.create_endpoint_config(
            EndpointConfigName="iris",
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": "iris", "ServerlessConfig": SERVERLESS}
            ],
        )
        sagemaker.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
        wait_for(
            lambda: sagemaker.describe_endpoint(EndpointName="iris"),
            "EndpointStatus",
            {"InService"},
            "endpoint iris",
        )
        unsigned = urllib.request.Request(
            f"{server.url}/endpoints/iris/invocations",
            data=b"5.1,3.5,1.4,0.2\n",
            headers={"Content-Type": "text/csv", "X-Modelhost-Internal-Token": "guess"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned)
        assert refused.value.code == 403
    finally:
        server.stop()


def test_stairs_supported_types_test_limit_and_max_invocations(sagemaker, server, model):
    """Candidates from SupportedInstanceTypes cut to MaxNumberOfTests; STAIRS traffic
    stops rising once MaxInvocations is reached (here at the first step)."""
    name = unique("rec-stairs")
    config = _input(
        model,
        ResourceLimit={"MaxNumberOfTests": 1},
        TrafficPattern={
            "TrafficType": "STAIRS",
            "Stairs": {"UsersPerStep": 1, "NumberOfSteps": 3, "DurationInSeconds": 1},
        },
    )
    config["ContainerConfig"]["SupportedInstanceTypes"] = ["ml.m5.large", "ml.c5.large"]
    sagemaker.create_inference_recommendations_job(
        JobName=name,
        JobType="Default",
        RoleArn=ROLE,
        InputConfig=config,
        StoppingConditions={"MaxInvocations": 1},
    )
    job = _wait_job(sagemaker, name, {"COMPLETED", "FAILED"})
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    assert [
        r["EndpointConfiguration"]["InstanceType"] for r in job["InferenceRecommendations"]
    ] == ["ml.m5.large"]
    with urllib.request.urlopen(
        f"{server.url}/inference-recommendations-jobs/{name}/load-curves"
    ) as response:
        curves = json.load(response)
    assert [[p["users"] for p in c["Points"]] for c in curves["Candidates"]] == [[1]]


def test_job_duration_cuts_the_traffic_and_the_remaining_candidates(sagemaker, server, model):
    name = unique("rec-short")
    sagemaker.create_inference_recommendations_job(
        JobName=name,
        JobType="Advanced",
        RoleArn=ROLE,
        InputConfig=_input(
            model,
            JobDurationInSeconds=1,
            TrafficPattern=_phases((1, 1), (1, 1), (1, 1)),
            EndpointConfigurations=[
                {"InstanceType": "ml.c5.large"},
                {"InstanceType": "ml.m5.large"},
            ],
        ),
    )
    job = _wait_job(sagemaker, name, {"COMPLETED", "FAILED"})
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    steps = sagemaker.list_inference_recommendations_job_steps(JobName=name)["Steps"]
    assert [s["Status"] for s in steps] == ["COMPLETED", "FAILED"]
    assert "JobDurationInSeconds" in steps[1]["InferenceBenchmark"]["FailureReason"]
    with urllib.request.urlopen(
        f"{server.url}/inference-recommendations-jobs/{name}/load-curves"
    ) as response:
        curves = json.load(response)
    assert 1 <= len(curves["Candidates"][0]["Points"]) < 3
    assert _temporary_endpoints(sagemaker) == []


def test_stop_deletes_the_temporary_endpoint(sagemaker, model):
    name = unique("rec-stop")
    sagemaker.create_inference_recommendations_job(
        JobName=name,
        JobType="Advanced",
        RoleArn=ROLE,
        InputConfig=_input(
            model,
            TrafficPattern=_phases((1, 300)),
            EndpointConfigurations=[{"InstanceType": "ml.c5.large"}],
        ),
    )
    deadline = time.monotonic() + 120
    while not _temporary_endpoints(sagemaker):
        assert time.monotonic() < deadline, "no temporary endpoint appeared"
        time.sleep(0.2)
    _wait_job(sagemaker, name, {"IN_PROGRESS"})
    sagemaker.stop_inference_recommendations_job(JobName=name)
    job = _wait_job(sagemaker, name, {"STOPPED"}, timeout_s=120)
    assert "CompletionTime" in job
    assert _temporary_endpoints(sagemaker) == []
    steps = sagemaker.list_inference_recommendations_job_steps(JobName=name)["Steps"]
    assert [s["Status"] for s in steps] == ["STOPPED"]
    with pytest.raises(ClientError) as error:
        sagemaker.stop_inference_recommendations_job(JobName=name)
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_unmet_latency_bound_fails_the_job_and_cleans_up(sagemaker, model):
    name = unique("rec-tight")
    sagemaker.create_inference_recommendations_job(
        JobName=name,
        JobType="Default",
        RoleArn=ROLE,
        InputConfig=_input(
            model,
            TrafficPattern=_phases((1, 1)),
            EndpointConfigurations=[{"InstanceType": "ml.c5.large"}],
        ),
        StoppingConditions={
            "ModelLatencyThresholds": [{"Percentile": "P99", "ValueInMilliseconds": 0}]
        },
    )
    job = _wait_job(sagemaker, name, {"COMPLETED", "FAILED"})
    assert job["Status"] == "FAILED"
    assert "P99 ≤ 0 ms" in job["FailureReason"]
    assert "InferenceRecommendations" not in job
    assert _temporary_endpoints(sagemaker) == []


def test_a_payload_prefix_with_nothing_in_it_fails_the_job_with_its_reason(
    sagemaker, server, model
):
    """A user's mistake: the job fails naming the empty SamplePayloadUrl, and the server
    logs it as such, not as a crash with a traceback."""
    name = unique("rec-empty")
    empty = "s3://payloads/nothing-here/"
    job_input = _input(model, TrafficPattern=_phases((1, 1)))
    job_input["ContainerConfig"]["PayloadConfig"]["SamplePayloadUrl"] = empty
    sagemaker.create_inference_recommendations_job(
        JobName=name, JobType="Default", RoleArn=ROLE, InputConfig=job_input
    )
    job = _wait_job(sagemaker, name, {"COMPLETED", "FAILED"})
    assert job["Status"] == "FAILED"
    assert f"SamplePayloadUrl {empty} holds no payloads" in job["FailureReason"]
    logged = [line for line in server.log().splitlines() if name in line]
    assert logged and not any("ERROR" in line for line in logged)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(ModelName="no-such-model"), "Could not find model"),
        (
            lambda c: c.update(EndpointConfigurations=[{"InstanceType": "ml.inf2.xlarge"}]),
            "not in modelhost's instance catalog",
        ),
        (
            lambda c: c.update(EndpointConfigurations=[{"InstanceType": "ml.banana"}]),
            "instanceType",
        ),
        (lambda c: c["ContainerConfig"].pop("PayloadConfig"), "SamplePayloadUrl"),
        (lambda c: c.update(TrafficPattern={"TrafficType": "PHASES"}), "Phase"),
    ],
)
def test_bad_input_is_a_validation_exception(sagemaker, model, change, message):
    config = _input(model)
    change(config)
    with pytest.raises(ClientError) as error:
        sagemaker.create_inference_recommendations_job(
            JobName=unique("rec-bad"), JobType="Default", RoleArn=ROLE, InputConfig=config
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert message in error.value.response["Error"]["Message"]


def test_unknown_and_duplicate_jobs(sagemaker, model):
    with pytest.raises(ClientError) as error:
        sagemaker.describe_inference_recommendations_job(JobName="no-such-job")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    name = unique("rec-dup")
    params = {
        "JobName": name,
        "JobType": "Default",
        "RoleArn": ROLE,
        "InputConfig": _input(
            model,
            TrafficPattern=_phases((1, 300)),
            EndpointConfigurations=[{"InstanceType": "ml.c5.large"}],
        ),
    }
    sagemaker.create_inference_recommendations_job(**params)
    try:
        with pytest.raises(ClientError) as error:
            sagemaker.create_inference_recommendations_job(**params)
        assert "already existing" in error.value.response["Error"]["Message"]
    finally:
        sagemaker.stop_inference_recommendations_job(JobName=name)
        _wait_job(sagemaker, name, {"STOPPED"}, timeout_s=120)
    assert _temporary_endpoints(sagemaker) == []


def test_job_interrupted_by_a_crash_resumes_after_restart(tmp_path):
    """SIGKILL the server while a candidate's temporary endpoint exists: the restarted
    server deletes that endpoint, runs the candidate again and completes the job."""
    own = ServerProcess(tmp_path / "data", env={"MODELHOST_MODEL_TIMEOUT": "5"}).start()
    try:
        put_iris_model(own.data_dir)
        sagemaker = own.client("sagemaker")
        sagemaker.create_model(
            ModelName="iris",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "modelhost/sklearn",
                "ModelDataUrl": "s3://models/iris/model.tar.gz",
            },
        )
        payloads = own.data_dir / "objects" / "payloads" / "iris" / "payloads.tar.gz"
        payloads.parent.mkdir(parents=True, exist_ok=True)
        payloads.write_bytes(model_tarball({"a.csv": b"5.1,3.5,1.4,0.2\n"}))
        sagemaker.create_inference_recommendations_job(
            JobName="crash",
            JobType="Advanced",
            RoleArn=ROLE,
            InputConfig=_input(
                "iris",
                TrafficPattern=_phases((1, 3)),
                EndpointConfigurations=[{"InstanceType": "ml.c5.large"}],
            ),
        )
        deadline = time.monotonic() + 120
        while not _temporary_endpoints(sagemaker):
            assert time.monotonic() < deadline, "no temporary endpoint appeared"
            time.sleep(0.1)
        own.kill()
        own.start()
        sagemaker = own.client("sagemaker")
        job = _wait_job(sagemaker, "crash", {"COMPLETED", "FAILED"})
        assert job["Status"] == "COMPLETED", job.get("FailureReason")
        assert len(job["InferenceRecommendations"]) == 1
        assert _temporary_endpoints(sagemaker) == []
        assert sagemaker.list_endpoint_configs(NameContains="recommender-")["EndpointConfigs"] == []
    finally:
        own.stop()


def test_cli_runs_a_recommendation_and_draws_the_chart(server, model, tmp_path):
    chart = tmp_path / "chart.png"
    result = run_cli(
        "recommend",
        "run",
        model,
        "--payload",
        PAYLOAD_URL,
        "--instance-type",
        "ml.c5.large",
        "--instance-type",
        "ml.m5.xlarge",
        "--phase",
        "1:1",
        "--phase",
        "1-3:1",
        "--latency",
        "P99:2000",
        "--chart",
        str(chart),
        url=server.url,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "★" in line)
    assert "ml.c5.large" in row and "COMPLETED" in row
    assert "ml.m5.xlarge" in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = run_cli("recommend", "list", "--json", url=server.url)
    assert model in listed.stdout
    bad = run_cli(
        "recommend", "run", model, "--payload", PAYLOAD_URL, "--latency", "fast", url=server.url
    )
    assert bad.returncode == 2 and "--latency" in bad.stderr
