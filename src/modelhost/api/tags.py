"""AddTags / ListTags / DeleteTags for every taggable resource, keyed by ARN."""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import page
from modelhost.errors import ValidationError

# ARN resource segment -> state-store kind
_KIND_BY_RESOURCE = {
    "model": "model",
    "endpoint-config": "endpoint_config",
    "endpoint": "endpoint",
    "transform-job": "transform_job",
    "inference-recommendations-job": "recommendation_job",
    "model-package-group": "model_package_group",
    "model-package": "model_package",
}
_MAX_TAGS = 50


def _require_resource(ctx: Context, arn: str) -> None:
    parts = arn.split(":", 5)
    resource, _, name = parts[-1].partition("/") if len(parts) == 6 else ("", "", "")
    kind = _KIND_BY_RESOURCE.get(resource)
    if kind is None or not name:
        raise ValidationError(f"Resource ARN is not valid or not supported: {arn}")
    if not any(r for r in ctx.store.list(kind) if r.get("_arn") == arn):
        raise ValidationError(f"Resource {arn} not found.")


def check_count(arn: str, keys: set[str]) -> None:
    """`keys`: every tag key the resource would have."""
    if len(keys) > _MAX_TAGS:
        raise ValidationError(
            f"A resource can have at most {_MAX_TAGS} tags; {arn} would have {len(keys)}"
        )


def add_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    _require_resource(ctx, arn)
    check_count(arn, set(ctx.store.tags(arn)) | {t["Key"] for t in params["Tags"]})
    ctx.store.set_tags(arn, {t["Key"]: t["Value"] for t in params["Tags"]})
    return {"Tags": params["Tags"]}


def list_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    _require_resource(ctx, arn)
    tags = [{"Key": k, "Value": v} for k, v in ctx.store.tags(arn).items()]
    return page(tags, params, "Tags", params.get("MaxResults", 50))


def delete_tags(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["ResourceArn"]
    _require_resource(ctx, arn)
    ctx.store.delete_tags(arn, params["TagKeys"])
    return {}
