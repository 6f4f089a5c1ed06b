"""CreateTransformJob / DescribeTransformJob / ListTransformJobs / StopTransformJob.

The API records the job (with a copy of its model, so deleting the model later does not
break a running or resumed job) and wakes the transform controller, which runs it.
DescribeTransformJob also carries `TransformProgress` (objects, records and bytes done):
SageMaker's response has no such member, and botocore's parser ignores members its
model does not know, so boto3 callers are unaffected and raw-JSON readers (the CLI) see it.
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import paginate
from modelhost.api.resources import copy_optional, create, public, require
from modelhost.batch import compile_filter
from modelhost.catalog import get_instance_type
from modelhost.domain import kinds
from modelhost.domain.containers import is_pipeline
from modelhost.errors import ResourceLimitExceeded, ValidationError

KIND = kinds.TRANSFORM_JOB
LABEL = "transform job"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
# SageMaker's default when the job does not say.
_DEFAULT_MAX_PAYLOAD_MB = 6
_PROCESSED_TYPES = ("text/csv", "application/jsonlines", "application/json")


def check_request(params: dict[str, Any]) -> None:
    transform_input = params["TransformInput"]
    split = transform_input.get("SplitType", "None")
    instance_type = params["TransformResources"]["InstanceType"]
    if get_instance_type(instance_type) is None:
        raise ValidationError(f"Instance type {instance_type} is not known to modelhost.")
    if params.get("MaxPayloadInMB") == 0 and split != "None":
        raise ValidationError("MaxPayloadInMB=0 (no limit) needs SplitType None.")
    processing = params.get("DataProcessing", {})
    for key in ("InputFilter", "OutputFilter"):
        try:
            compile_filter(processing.get(key))
        except ValueError as exc:
            raise ValidationError(f"DataProcessing.{key}: {exc}") from None
    filtering = any(processing.get(k, "$").strip() != "$" for k in ("InputFilter", "OutputFilter"))
    if filtering or processing.get("JoinSource", "None") == "Input":
        content_type = (transform_input.get("ContentType") or "").split(";")[0].strip()
        if split != "Line":
            raise ValidationError("DataProcessing filters and JoinSource need SplitType Line.")
        if content_type.lower() not in _PROCESSED_TYPES:
            raise ValidationError(
                "DataProcessing filters and JoinSource work on CSV (text/csv) and JSON Lines "
                "(application/jsonlines) input; set TransformInput.ContentType."
            )
    uri = transform_input["DataSource"]["S3DataSource"]["S3Uri"]
    if not uri.startswith("s3://"):
        raise ValidationError(f"S3Uri must be an s3:// URI, got {uri[:128]}")


def _check_capture(capture: dict[str, Any]) -> None:
    if "KmsKeyId" in capture:
        raise ValidationError(
            "DataCaptureConfig.KmsKeyId (encrypting captured data with a KMS key) is not "
            "supported by modelhost."
        )
    if not capture["DestinationS3Uri"].startswith("s3://"):
        raise ValidationError(
            "DataCaptureConfig.DestinationS3Uri must be an s3:// URI, got "
            f"{capture['DestinationS3Uri'][:128]}"
        )


def _check_instance_quota(ctx: Context, count: int) -> None:
    """Jobs in progress share MODELHOST_MAX_INSTANCES: each instance is a process here."""
    running = sum(
        r["TransformResources"]["InstanceCount"]
        for r in ctx.store.list(KIND)
        if r["TransformJobStatus"] not in TERMINAL
    )
    if running + count > ctx.settings.max_instances:
        raise ResourceLimitExceeded(
            f"The job would run {running + count} transform instances on this modelhost "
            f"server; the limit is {ctx.settings.max_instances} (MODELHOST_MAX_INSTANCES)."
        )


def create_transform_job(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["TransformJobName"]
    capture = params.get("DataCaptureConfig")
    if capture is not None:
        _check_capture(capture)
    model = require(ctx, "model", "model", params["ModelName"])
    if is_pipeline(model):
        raise ValidationError(
            f"Model {params['ModelName']} has several containers; transform jobs on modelhost "
            "run single-container models."
        )
    if model["PrimaryContainer"].get("Mode") == "MultiModel":
        raise ValidationError(
            f"Model {params['ModelName']} is a multi-model container (Mode=MultiModel); "
            "batch transform runs single-model containers."
        )
    check_request(params)
    _check_instance_quota(ctx, params["TransformResources"]["InstanceCount"])
    arn = ctx.arn("transform-job", name)
    now = ctx.now()
    split = params["TransformInput"].get("SplitType", "None")
    record = {
        "TransformJobName": name,
        "TransformJobArn": arn,
        "TransformJobStatus": "InProgress",
        "ModelName": params["ModelName"],
        "MaxPayloadInMB": params.get("MaxPayloadInMB", _DEFAULT_MAX_PAYLOAD_MB),
        "BatchStrategy": params.get(
            "BatchStrategy", "SingleRecord" if split == "None" else "MultiRecord"
        ),
        "TransformInput": {
            "CompressionType": "None",
            "SplitType": "None",
            **params["TransformInput"],
        },
        "TransformOutput": {"AssembleWith": "None", **params["TransformOutput"]},
        "TransformResources": params["TransformResources"],
        "DataProcessing": {
            "InputFilter": "$",
            "OutputFilter": "$",
            "JoinSource": "None",
            **params.get("DataProcessing", {}),
        },
        "CreationTime": now,
        "LastModifiedTime": now,
        "TransformStartTime": now,
        "_arn": arn,
        "_model": model,
    }
    copy_optional(
        params,
        record,
        (
            "MaxConcurrentTransforms",
            "ModelClientConfig",
            "DataCaptureConfig",
            "Environment",
            "ExperimentConfig",
        ),
    )
    create(ctx, KIND, LABEL, name, record, params.get("Tags"))
    ctx.notify()
    return {"TransformJobArn": arn}


def describe_transform_job(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require(ctx, KIND, LABEL, params["TransformJobName"]))


def list_transform_jobs(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "TransformJobName",
        "TransformJobArn",
        "CreationTime",
        "TransformEndTime",
        "LastModifiedTime",
        "TransformJobStatus",
        "FailureReason",
    )
    return paginate(
        ctx.store.list(KIND),
        params,
        name_key="TransformJobName",
        sort_keys={
            "Name": "TransformJobName",
            "CreationTime": "CreationTime",
            "Status": "TransformJobStatus",
        },
        summarize=lambda r: {k: r[k] for k in keys if k in r},
        result_key="TransformJobSummaries",
        status_key="TransformJobStatus",
    )


def stop_transform_job(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["TransformJobName"]
    require(ctx, KIND, LABEL, name)

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        if record["TransformJobStatus"] in TERMINAL:
            raise ValidationError(
                f"Transform job {name} is already {record['TransformJobStatus']}; only a job "
                "in progress can be stopped."
            )
        if record["TransformJobStatus"] == "Stopping":
            return None
        record["TransformJobStatus"] = "Stopping"
        record["LastModifiedTime"] = ctx.now()
        return record

    ctx.store.modify(KIND, name, change)
    ctx.notify()
    return {}
