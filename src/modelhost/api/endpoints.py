"""CreateEndpoint / DescribeEndpoint / ListEndpoints / UpdateEndpoint / DeleteEndpoint /
UpdateEndpointWeightsAndCapacities.

The API only records desired state (`_desired`) and wakes the endpoint controller, which
starts instances and moves EndpointStatus along. `_desired` holds copies of the config and
models as they were when the call was made: SageMaker lets users delete a config or model
while an endpoint still runs it, and a restarted server must still be able to redeploy.
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.deployment_config import check_deployment_config, retain_variant_properties
from modelhost.api.listing import paginate
from modelhost.api.resources import create, public, require
from modelhost.api.serverless import check_capacity_update
from modelhost.domain import kinds
from modelhost.domain.containers import is_pipeline
from modelhost.domain.endpoints import deployed_fields, instance_bounds, is_serverless
from modelhost.errors import ResourceLimitExceeded, ValidationError

KIND = kinds.ENDPOINT
LABEL = "endpoint"
# UpdateEndpoint also takes an endpoint whose rollback failed: a new config is the way out.
_UPDATABLE = frozenset({"InService", "UpdateRollbackFailed"})


def _desired(ctx: Context, config_name: str, generation: int) -> dict[str, Any]:
    config = require(ctx, "endpoint_config", "endpoint configuration", config_name)
    models = {
        v["ModelName"]: require(ctx, "model", "model", v["ModelName"])
        for v in [*config["ProductionVariants"], *config.get("ShadowProductionVariants", [])]
        if "ModelName" in v  # a variant without one hosts inference components
    }
    if "AsyncInferenceConfig" in config:
        for model in models.values():
            if is_pipeline(model):
                raise ValidationError(
                    f"Model {model['ModelName']} has several containers; asynchronous "
                    "endpoints on modelhost run single-container models."
                )
    capacity = {
        v["VariantName"]: {
            "weight": v["InitialVariantWeight"],
            "count": 0,
            "serverless": dict(v["ServerlessConfig"]),
        }
        if is_serverless(v)
        else {"weight": v["InitialVariantWeight"], "count": v["InitialInstanceCount"]}
        for v in config["ProductionVariants"]
    }
    return {"generation": generation, "config": config, "models": models, "capacity": capacity}


def _instances(ctx: Context, desired: dict[str, Any]) -> int:
    """Instances the desired state may run; a serverless variant counts with its most."""
    shadows = desired["config"].get("ShadowProductionVariants", [])
    return sum(
        instance_bounds(capacity["serverless"], ctx.settings)[1]
        if "serverless" in capacity
        else capacity["count"]
        for capacity in desired["capacity"].values()
    ) + sum(v["InitialInstanceCount"] for v in shadows)


def _check_instance_quota(ctx: Context, name: str, desired: dict[str, Any]) -> None:
    """Refuse desired state that would run more instances than the server allows; an
    endpoint being updated counts with its larger state, as both run for a while."""
    others = sum(
        _instances(ctx, record["_desired"])
        for record in ctx.store.list(KIND)
        if record["EndpointName"] != name and record["EndpointStatus"] != "Failed"
    )
    current = ctx.store.get(KIND, name)
    mine = max(_instances(ctx, desired), _instances(ctx, current["_desired"]) if current else 0)
    limit = ctx.settings.max_instances
    if others + mine > limit:
        raise ResourceLimitExceeded(
            f"The request would run {others + mine} instances on this modelhost server; the "
            f"limit is {limit} (MODELHOST_MAX_INSTANCES)."
        )


def create_endpoint(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["EndpointName"]
    desired = _desired(ctx, params["EndpointConfigName"], generation=1)
    _check_instance_quota(ctx, name, desired)
    arn = ctx.arn("endpoint", name)
    now = ctx.now()
    record = {
        "EndpointName": name,
        "EndpointArn": arn,
        "EndpointConfigName": params["EndpointConfigName"],
        **deployed_fields(desired),
        "EndpointStatus": "Creating",
        "CreationTime": now,
        "LastModifiedTime": now,
        "_arn": arn,
        "_desired": desired,
    }
    create(ctx, KIND, LABEL, name, record, params.get("Tags"))
    ctx.notify()
    return {"EndpointArn": arn}


def describe_endpoint(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require(ctx, KIND, LABEL, params["EndpointName"]))


def list_endpoints(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return paginate(
        ctx.store.list(KIND),
        params,
        name_key="EndpointName",
        sort_keys={
            "Name": "EndpointName",
            "CreationTime": "CreationTime",
            "Status": "EndpointStatus",
        },
        summarize=lambda r: {
            k: r[k]
            for k in (
                "EndpointName",
                "EndpointArn",
                "CreationTime",
                "LastModifiedTime",
                "EndpointStatus",
            )
        },
        result_key="Endpoints",
        status_key="EndpointStatus",
    )


def _require_in_service(
    ctx: Context, name: str, action: str, allowed: frozenset[str] = frozenset({"InService"})
) -> dict[str, Any]:
    record = require(ctx, KIND, LABEL, name)
    if record["EndpointStatus"] not in allowed:
        raise ValidationError(
            f'Cannot {action} endpoint "{record["EndpointArn"]}" while its status is '
            f"{record['EndpointStatus']}; wait until it is InService."
        )
    return record


def update_endpoint(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["EndpointName"]
    config_name = params["EndpointConfigName"]

    def change(record: dict[str, Any]) -> dict[str, Any]:
        if record["EndpointStatus"] not in _UPDATABLE:
            raise ValidationError(
                f'Cannot update endpoint "{record["EndpointArn"]}" while its status is '
                f"{record['EndpointStatus']}; wait until it is InService."
            )
        desired = _desired(ctx, config_name, record["_desired"]["generation"] + 1)
        retain_variant_properties(params, record["_desired"], desired)
        deployment = params.get("DeploymentConfig")
        if deployment is None and params.get("RetainDeploymentConfig"):
            deployment = record.get("LastDeploymentConfig")
        if deployment is not None:
            desired["deployment"] = check_deployment_config(ctx, deployment, desired)
            record["LastDeploymentConfig"] = deployment
        _check_instance_quota(ctx, name, desired)
        now = ctx.now()
        record.update(
            EndpointStatus="Updating",
            LastModifiedTime=now,
            PendingDeploymentSummary={"EndpointConfigName": config_name, "StartTime": now},
            _desired=desired,
        )
        record.pop("FailureReason", None)
        return record

    _require_in_service(ctx, name, "update", _UPDATABLE)
    record = ctx.store.modify(KIND, name, change)
    if record is None:
        require(ctx, KIND, LABEL, name)
    ctx.notify()
    return {"EndpointArn": ctx.arn("endpoint", name)}


def update_endpoint_weights_and_capacities(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["EndpointName"]
    record = _require_in_service(ctx, name, "update weights and capacities of")
    known = set(record["_desired"]["capacity"])
    requested = params["DesiredWeightsAndCapacities"]
    for item in requested:
        if item["VariantName"] not in known:
            raise ValidationError(
                f"The variant name(s) [{item['VariantName']}] is/are not present in the "
                f'endpoint "{record["EndpointArn"]}"; variants: {sorted(known)}'
            )
        check_capacity_update(item, record["_desired"]["capacity"][item["VariantName"]])
        if not {"DesiredWeight", "DesiredInstanceCount", "ServerlessUpdateConfig"} & set(item):
            raise ValidationError(
                f"Variant {item['VariantName']}: specify DesiredWeight or DesiredInstanceCount."
            )

    def change(current: dict[str, Any]) -> dict[str, Any]:
        desired = current["_desired"]
        for item in requested:
            capacity = desired["capacity"][item["VariantName"]]
            if "DesiredWeight" in item:
                capacity["weight"] = item["DesiredWeight"]
            if "DesiredInstanceCount" in item:
                capacity["count"] = item["DesiredInstanceCount"]
            if "ServerlessUpdateConfig" in item:
                capacity["serverless"].update(item["ServerlessUpdateConfig"])
        _check_instance_quota(ctx, name, desired)
        desired["generation"] += 1
        # DescribeEndpoint shows the new desired counts at once, the running ones as
        # they are until the controller has applied the change.
        running = {
            v["VariantName"]: (v["CurrentWeight"], v.get("CurrentInstanceCount", 0))
            for v in current["ProductionVariants"]
        }
        current.update(
            EndpointStatus="Updating",
            LastModifiedTime=ctx.now(),
            _desired=desired,
            **deployed_fields(desired, running),
        )
        return current

    ctx.store.modify(KIND, name, change)
    ctx.notify()
    return {"EndpointArn": record["EndpointArn"]}


def delete_endpoint(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["EndpointName"]
    require(ctx, KIND, LABEL, name)

    def change(record: dict[str, Any]) -> dict[str, Any]:
        record.update(EndpointStatus="Deleting", LastModifiedTime=ctx.now())
        return record

    ctx.store.modify(KIND, name, change)
    ctx.notify()
    return {}
