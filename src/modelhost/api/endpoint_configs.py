"""CreateEndpointConfig / DescribeEndpointConfig / ListEndpointConfigs / DeleteEndpointConfig."""

from __future__ import annotations

from typing import Any

from modelhost.api.async_config import check_async_config
from modelhost.api.context import Context
from modelhost.api.listing import paginate
from modelhost.api.resources import copy_optional, create, public, require
from modelhost.api.serverless import check_serverless_config, check_serverless_variant
from modelhost.catalog import get_instance_type
from modelhost.domain import kinds
from modelhost.domain.endpoints import is_serverless
from modelhost.errors import ValidationError

KIND = kinds.ENDPOINT_CONFIG

# Parts of the API that later releases of modelhost fill in; refused clearly until then.
_NOT_YET = {
    "ExplainerConfig": "Online explainability (ExplainerConfig)",
}


def _check_managed_scaling(name: str, variant: dict[str, Any]) -> None:
    """ManagedInstanceScaling: instances added for inference component copies that fit
    nowhere, and removed when they hold none, within MinInstanceCount..MaxInstanceCount;
    only on a variant that hosts components (one with a model scales with Application
    Auto Scaling)."""
    managed = variant["ManagedInstanceScaling"]
    if "ModelName" in variant:
        raise ValidationError(
            f"Variant {name}: ManagedInstanceScaling applies to a variant that hosts "
            "inference components (no ModelName); scale a model's variant with Application "
            "Auto Scaling or UpdateEndpointWeightsAndCapacities."
        )
    if "ScaleInPolicy" in managed:
        raise ValidationError(
            f"Variant {name}: ManagedInstanceScaling.ScaleInPolicy is not supported by "
            "modelhost: an instance is removed once no copy is placed on it."
        )
    if managed.get("Status") != "ENABLED":
        return
    low = managed.get("MinInstanceCount", 0)
    high = managed.get("MaxInstanceCount")
    initial = variant.get("InitialInstanceCount", 0)
    if high is None or not low <= initial <= high:
        raise ValidationError(
            f"Variant {name}: an ENABLED ManagedInstanceScaling needs MaxInstanceCount, and "
            f"MinInstanceCount <= InitialInstanceCount <= MaxInstanceCount (got {low}, "
            f"{initial}, {high})."
        )


def _check_variant(
    ctx: Context, index: int, variant: dict[str, Any], *, hosts_components: bool = True
) -> dict[str, Any]:
    """A production variant without a ModelName is capacity for inference components
    (instances only); shadow variants, serverless and asynchronous ones need a model."""
    name = variant["VariantName"]
    if "ManagedInstanceScaling" in variant:
        _check_managed_scaling(name, variant)
    if "ModelName" not in variant and (not hosts_components or is_serverless(variant)):
        raise ValidationError(
            f"Variant {name}: ModelName is required (only an instance-based production "
            "variant may leave it out, to host inference components)."
        )
    if is_serverless(variant):
        check_serverless_variant(index, variant)
    elif "InstanceType" not in variant or "InitialInstanceCount" not in variant:
        raise ValidationError(
            f"Variant {name}: InstanceType and InitialInstanceCount (or ServerlessConfig) "
            "are required."
        )
    elif get_instance_type(variant["InstanceType"]) is None:
        raise ValidationError(
            f"Variant {name}: instance type {variant['InstanceType']} is not in modelhost's "
            "instance catalog."
        )
    if "ModelName" in variant:
        require(ctx, "model", "model", variant["ModelName"])
    return {"InitialVariantWeight": 1.0, **variant}


def _check_shadows(
    params: dict[str, Any], variants: list[dict[str, Any]], shadows: list[dict[str, Any]]
) -> None:
    """Shadow variants are mirrored real-time traffic: instance variants beside instance
    production variants only."""
    if "AsyncInferenceConfig" in params:
        raise ValidationError(
            "ShadowProductionVariants cannot be used with AsyncInferenceConfig: shadow "
            "variants mirror real-time invocations."
        )
    if any(is_serverless(v) for v in [*variants, *shadows]):
        raise ValidationError(
            "ShadowProductionVariants are supported with instance-based variants only, not "
            "with ServerlessConfig."
        )


def _check_capture(params: dict[str, Any]) -> None:
    """What real-time data capture can follow; the rest is refused, never ignored."""
    capture = params["DataCaptureConfig"]
    if "KmsKeyId" in capture:
        raise ValidationError(
            "DataCaptureConfig.KmsKeyId is not supported by modelhost: capture files are "
            "written with the object store's own encryption."
        )
    if "AsyncInferenceConfig" in params:
        raise ValidationError(
            "DataCaptureConfig is supported for real-time endpoints only; this config has an "
            "AsyncInferenceConfig."
        )
    if not capture.get("DestinationS3Uri", "").startswith("s3://"):
        raise ValidationError("DataCaptureConfig.DestinationS3Uri must be an s3:// URI.")
    if not capture.get("CaptureOptions"):
        raise ValidationError("DataCaptureConfig.CaptureOptions needs at least one CaptureMode.")


def create_endpoint_config(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["EndpointConfigName"]
    for key, what in _NOT_YET.items():
        if params.get(key):
            raise ValidationError(f"{what} is not supported by modelhost yet.")
    variants = [_check_variant(ctx, i, v) for i, v in enumerate(params["ProductionVariants"], 1)]
    shadows = [
        _check_variant(ctx, i, v, hosts_components=False)
        for i, v in enumerate(params.get("ShadowProductionVariants", []), 1)
    ]
    if shadows:
        _check_shadows(params, variants, shadows)
    check_serverless_config(params, variants)
    if "AsyncInferenceConfig" in params:
        if any(is_serverless(v) for v in variants):
            raise ValidationError(
                "AsyncInferenceConfig cannot be used with serverless variants (ServerlessConfig)."
            )
        check_async_config(params["AsyncInferenceConfig"])
        if any("ModelName" not in v for v in variants):
            raise ValidationError(
                "AsyncInferenceConfig cannot be used with a variant without a ModelName: "
                "modelhost's inference components take real-time invocations."
            )
    if "DataCaptureConfig" in params:
        _check_capture(params)
    names = [v["VariantName"] for v in [*variants, *shadows]]
    if len(set(names)) != len(names):
        raise ValidationError(f"Variant names must be unique within an endpoint config: {names}")
    arn = ctx.arn("endpoint-config", name)
    record = {
        "EndpointConfigName": name,
        "EndpointConfigArn": arn,
        "ProductionVariants": variants,
        **({"ShadowProductionVariants": shadows} if shadows else {}),
        "CreationTime": ctx.now(),
        "_arn": arn,
    }
    copy_optional(
        params,
        record,
        (
            "AsyncInferenceConfig",
            "DataCaptureConfig",
            "KmsKeyId",
            "EnableNetworkIsolation",
            "ExecutionRoleArn",
            "VpcConfig",
        ),
    )
    create(ctx, KIND, "endpoint configuration", name, record, params.get("Tags"))
    return {"EndpointConfigArn": arn}


def describe_endpoint_config(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require(ctx, KIND, "endpoint configuration", params["EndpointConfigName"]))


def list_endpoint_configs(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return paginate(
        ctx.store.list(KIND),
        params,
        name_key="EndpointConfigName",
        sort_keys={"Name": "EndpointConfigName", "CreationTime": "CreationTime"},
        summarize=lambda r: {
            k: r[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")
        },
        result_key="EndpointConfigs",
    )


def delete_endpoint_config(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    record = require(ctx, KIND, "endpoint configuration", params["EndpointConfigName"])
    ctx.store.delete(KIND, params["EndpointConfigName"], arn=record["EndpointConfigArn"])
    return {}
