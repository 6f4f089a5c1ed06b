"""CreateInferenceRecommendationsJob / DescribeInferenceRecommendationsJob /
ListInferenceRecommendationsJobs / StopInferenceRecommendationsJob /
ListInferenceRecommendationsJobSteps.

The API checks the request and records the job with one BENCHMARK step per candidate
endpoint configuration; the recommender controller runs the steps. Everything the
controller needs later is resolved now (instance types, traffic steps, the latency bound),
so a bad request is a ValidationException here and never a job that fails later.
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import page, paginate
from modelhost.api.model_packages import container_of, require_package
from modelhost.api.resources import create, public, require
from modelhost.catalog import get_instance_type
from modelhost.domain import kinds
from modelhost.errors import ValidationError

KIND = kinds.RECOMMENDATION_JOB
LABEL = "inference recommendations job"

# Candidates of a Default job that names none: small general-purpose and compute types.
DEFAULT_INSTANCE_TYPES = ("ml.c5.large", "ml.m5.large", "ml.c5.xlarge", "ml.m5.xlarge")
# A Default job's traffic when none is given: 1, 2, 3, 4 users, 10 s each.
_DEFAULT_STAIRS = {"UsersPerStep": 1, "NumberOfSteps": 4, "DurationInSeconds": 10}
_PERCENTILES = {"P50": 50.0, "P90": 90.0, "P95": 95.0, "P99": 99.0}


def _candidates(params: dict[str, Any]) -> list[dict[str, Any]]:
    config = params["InputConfig"]
    endpoints = config.get("EndpointConfigurations")
    if not endpoints:
        supported = config.get("ContainerConfig", {}).get("SupportedInstanceTypes")
        endpoints = [{"InstanceType": t} for t in supported or DEFAULT_INSTANCE_TYPES]
    candidates = []
    for endpoint in endpoints:
        if "EnvironmentParameterRanges" in endpoint or "InferenceSpecificationName" in endpoint:
            raise ValidationError(
                "EnvironmentParameterRanges and InferenceSpecificationName "
                "are not supported by modelhost yet."
            )
        if "ServerlessConfig" in endpoint:
            candidates.append({"ServerlessConfig": endpoint["ServerlessConfig"]})
            continue
        instance_type = endpoint.get("InstanceType")
        if instance_type is None:
            raise ValidationError(
                "Each EndpointConfigurations entry needs an InstanceType or a ServerlessConfig."
            )
        if get_instance_type(instance_type) is None:
            raise ValidationError(
                f"Instance type {instance_type} is not in modelhost's instance catalog."
            )
        candidates.append({"InstanceType": instance_type, "InitialInstanceCount": 1})
    limit = config.get("ResourceLimit", {}).get("MaxNumberOfTests")
    return candidates[:limit] if limit else candidates


def _traffic_steps(params: dict[str, Any]) -> list[dict[str, int]]:
    """The traffic as a list of closed-loop steps: users at the start and end of each, and
    its duration. SageMaker's SpawnRate is users added per minute."""
    pattern = params["InputConfig"].get("TrafficPattern")
    if pattern is None or (pattern.get("TrafficType") == "STAIRS" and "Stairs" not in pattern):
        stairs = (pattern or {}).get("Stairs", _DEFAULT_STAIRS)
        pattern = {"TrafficType": "STAIRS", "Stairs": stairs}
    if pattern.get("TrafficType", "PHASES") == "STAIRS":
        # Stairs.DurationInSeconds is the length of each step, as in SageMaker.
        stairs = {**_DEFAULT_STAIRS, **pattern["Stairs"]}
        return [
            {
                "users": stairs["UsersPerStep"] * (i + 1),
                "end_users": stairs["UsersPerStep"] * (i + 1),
                "seconds": stairs["DurationInSeconds"],
            }
            for i in range(stairs["NumberOfSteps"])
        ]
    phases = pattern.get("Phases")
    if not phases:
        raise ValidationError("TrafficPattern of type PHASES needs at least one Phase.")
    steps = []
    for phase in phases:
        if "InitialNumberOfUsers" not in phase or "DurationInSeconds" not in phase:
            raise ValidationError("Each Phase needs InitialNumberOfUsers and DurationInSeconds.")
        users, seconds = phase["InitialNumberOfUsers"], phase["DurationInSeconds"]
        end = users + int(phase.get("SpawnRate", 0) * seconds / 60)
        steps.append({"users": users, "end_users": end, "seconds": seconds})
    return steps


def _latency_bound(params: dict[str, Any]) -> dict[str, Any] | None:
    thresholds = params.get("StoppingConditions", {}).get("ModelLatencyThresholds")
    if not thresholds:
        return None
    threshold = thresholds[0]
    percentile = threshold.get("Percentile", "P95")
    if percentile not in _PERCENTILES or "ValueInMilliseconds" not in threshold:
        raise ValidationError(
            f"ModelLatencyThresholds needs a Percentile of "
            f"{sorted(_PERCENTILES)} and a ValueInMilliseconds."
        )
    return {
        "percentile": _PERCENTILES[percentile],
        "label": percentile,
        "ms": threshold["ValueInMilliseconds"],
    }


def create_inference_recommendations_job(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["JobName"]
    config = params["InputConfig"]
    for unsupported in ("Endpoints", "VpcConfig"):
        if unsupported in config:
            raise ValidationError(
                f"InputConfig.{unsupported} is not supported by modelhost; give a ModelName "
                "or a ModelPackageVersionArn."
            )
    if ("ModelName" in config) == ("ModelPackageVersionArn" in config):
        raise ValidationError(
            "InputConfig needs exactly one of ModelName and ModelPackageVersionArn."
        )
    container = None
    if "ModelName" in config:
        require(ctx, "model", "model", config["ModelName"])
    else:
        package = require_package(ctx, config["ModelPackageVersionArn"])
        if "ModelPackageVersion" not in package:
            raise ValidationError(
                "InputConfig.ModelPackageVersionArn must name a versioned model package "
                f"(one in a model package group); {package['ModelPackageArn']} is not."
            )
        # what the candidates' temporary models run; a package need not be approved
        # to be measured
        container = container_of(package)
    payload = config.get("ContainerConfig", {}).get("PayloadConfig", {})
    if not payload.get("SamplePayloadUrl"):
        raise ValidationError(
            "InputConfig.ContainerConfig.PayloadConfig.SamplePayloadUrl is "
            "required: the sample requests the load test sends."
        )
    candidates = _candidates(params)
    steps = _traffic_steps(params)
    arn = ctx.arn("inference-recommendations-job", name)
    now = ctx.now()
    record = {
        "JobName": name,
        "JobDescription": params.get("JobDescription", ""),
        "JobType": params["JobType"],
        "JobArn": arn,
        "RoleArn": params["RoleArn"],
        "Status": "PENDING",
        "CreationTime": now,
        "LastModifiedTime": now,
        "InputConfig": config,
        **(
            {"StoppingConditions": params["StoppingConditions"]}
            if "StoppingConditions" in params
            else {}
        ),
        "_arn": arn,
        "_plan": {
            "traffic": steps,
            "latency": _latency_bound(params),
            "max_invocations": params.get("StoppingConditions", {}).get("MaxInvocations"),
            "content_type": (payload.get("SupportedContentTypes") or ["application/json"])[0],
            # a job on a model package: the container its temporary models run
            "container": container,
            # JobDurationInSeconds, as a wall-clock deadline that survives restarts
            "deadline": now + config["JobDurationInSeconds"]
            if "JobDurationInSeconds" in config
            else None,
        },
        "_steps": [
            {"StepType": "BENCHMARK", "JobName": name, "Status": "PENDING", "_candidate": c}
            for c in candidates
        ],
        "_endpoints": [],
    }
    create(ctx, KIND, LABEL, name, record, params.get("Tags"))
    ctx.notify()
    return {"JobArn": arn}


def describe_inference_recommendations_job(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    record = require(ctx, KIND, LABEL, params["JobName"])
    recommendations = record.get("_recommendations")
    return public(record) | (
        {"InferenceRecommendations": recommendations} if recommendations else {}
    )


def list_inference_recommendations_jobs(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    records = ctx.store.list(KIND)
    if model := params.get("ModelNameEquals"):
        records = [r for r in records if r["InputConfig"].get("ModelName") == model]
    if package := params.get("ModelPackageVersionArnEquals"):
        records = [r for r in records if r["InputConfig"].get("ModelPackageVersionArn") == package]
    return paginate(
        records,
        params,
        name_key="JobName",
        sort_keys={"Name": "JobName", "CreationTime": "CreationTime", "Status": "Status"},
        summarize=lambda r: {
            **{
                k: r[k]
                for k in (
                    "JobName",
                    "JobDescription",
                    "JobType",
                    "JobArn",
                    "Status",
                    "CreationTime",
                    "RoleArn",
                    "LastModifiedTime",
                )
                if k in r
            },
            **{k: r[k] for k in ("CompletionTime", "FailureReason") if k in r},
            **{
                k: r["InputConfig"][k]
                for k in ("ModelName", "ModelPackageVersionArn")
                if k in r["InputConfig"]
            },
            "SamplePayloadUrl": r["InputConfig"]["ContainerConfig"]["PayloadConfig"][
                "SamplePayloadUrl"
            ],
        },
        result_key="InferenceRecommendationsJobs",
        status_key="Status",
    )


def stop_inference_recommendations_job(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["JobName"]
    require(ctx, KIND, LABEL, name)

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        if record["Status"] not in ("PENDING", "IN_PROGRESS"):
            raise ValidationError(
                f'Cannot stop job "{record["JobArn"]}": its status is {record["Status"]}.'
            )
        record.update(Status="STOPPING", LastModifiedTime=ctx.now())
        return record

    ctx.store.modify(KIND, name, change)
    ctx.notify()
    return {}


def list_inference_recommendations_job_steps(
    ctx: Context, params: dict[str, Any]
) -> dict[str, Any]:
    record = require(ctx, KIND, LABEL, params["JobName"])
    steps = [public(step) for step in record["_steps"]]
    if status := params.get("Status"):
        steps = [s for s in steps if s["Status"] == status]
    if step_type := params.get("StepType"):
        steps = [s for s in steps if s["StepType"] == step_type]
    return page(steps, params, "Steps", params.get("MaxResults", 10))
