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
    "ShadowProductionVariants": "Shadow variants (ShadowProductionVariants)",
    "ExplainerConfig": "Online explainability (ExplainerConfig)",
}


def _check_variant(ctx: Context, index: int, variant: dict[str, Any]) -> dict[str, Any]:
    name = variant["VariantName"]
    if "ModelName" not in variant:
        raise ValidationError(f"Variant {name}: ModelName is required.")
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
    require(ctx, "model", "model", variant["ModelName"])
    return {"InitialVariantWeight": 1.0, **variant}


def create_endpoint_config(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["EndpointConfigName"]
    for key, what in _NOT_YET.items():
        if params.get(key):
            raise ValidationError(f"{what} is not supported by modelhost yet.")
    variants = [_check_variant(ctx, i, v) for i, v in enumerate(params["ProductionVariants"], 1)]
    check_serverless_config(params, variants)
    if "AsyncInferenceConfig" in params:
        if any(is_serverless(v) for v in variants):
            raise ValidationError(
                "AsyncInferenceConfig cannot be used with serverless variants (ServerlessConfig)."
            )
        check_async_config(params["AsyncInferenceConfig"])
    names = [v["VariantName"] for v in variants]
    if len(set(names)) != len(names):
        raise ValidationError(f"Variant names must be unique within an endpoint config: {names}")
    arn = ctx.arn("endpoint-config", name)
    record = {
        "EndpointConfigName": name,
        "EndpointConfigArn": arn,
        "ProductionVariants": variants,
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
    ctx.store.delete(KIND, params["EndpointConfigName"])
    ctx.store.delete_tags(record["EndpointConfigArn"])
    return {}
