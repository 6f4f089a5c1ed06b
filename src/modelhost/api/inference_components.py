"""CreateInferenceComponent / DescribeInferenceComponent / ListInferenceComponents /
UpdateInferenceComponent / UpdateInferenceComponentRuntimeConfig /
DeleteInferenceComponent.

An inference component is a model hosted on an endpoint variant that has instances but no
model of its own; each of its copies takes `ComputeResourceRequirements` from one of the
variant's instances (see modelhost.domain.inference_components). The operations record
the desired state (`Specification`, `RuntimeConfig.CopyCount`) and wake the endpoint
controller, which places and starts the copies and reports `CurrentCopyCount` and the
status. A new `Specification` is rolled out new copies first, batch by batch as the
update's `DeploymentConfig.RollingUpdatePolicy` says, and rolled back to the one that
served before it when its copies cannot start (the controller keeps that one in
`_previous` until the update is done). Parts of the API modelhost does not implement are
refused by name, never stored and ignored.
"""

from __future__ import annotations

import time
from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import paginate
from modelhost.api.resources import create, public, require
from modelhost.catalog import get_instance_type
from modelhost.domain import kinds
from modelhost.domain.containers import is_pipeline
from modelhost.domain.inference_components import Needs, fits, room
from modelhost.errors import ValidationError

KIND = kinds.INFERENCE_COMPONENT
LABEL = "inference component"

#: Request members modelhost does not implement, with what they are.
_REFUSED = {
    "Specifications": "Specifications (components across several instance types)",
}
_REFUSED_SPECIFICATION = {
    "InstanceType": "Specification.InstanceType (instance pools)",
    "BaseInferenceComponentName": "Specification.BaseInferenceComponentName (adapters)",
    "DataCacheConfig": "Specification.DataCacheConfig",
    "SchedulingConfig": "Specification.SchedulingConfig",
}
_REFUSED_CONTAINER = {
    "ContainerMetricsConfig": "Specification.Container.ContainerMetricsConfig",
}
# Statuses in which a component takes a new desired state.
_CHANGEABLE = frozenset({"InService", "Failed", "Creating", "Updating"})


def _refuse_unsupported(params: dict[str, Any]) -> None:
    found = [what for key, what in _REFUSED.items() if key in params]
    specification = params.get("Specification", {})
    found += [what for key, what in _REFUSED_SPECIFICATION.items() if key in specification]
    container = specification.get("Container", {})
    found += [what for key, what in _REFUSED_CONTAINER.items() if key in container]
    if found:
        raise ValidationError(
            f"{', '.join(found)}: not supported by modelhost's inference components."
        )


def _host_variant(
    ctx: Context, endpoint: dict[str, Any], variant_name: str | None
) -> dict[str, Any]:
    """The endpoint's variant the component goes on: one with instances and no model."""
    variants = endpoint["_desired"]["config"]["ProductionVariants"]
    if variant_name is None:
        if len(variants) != 1:
            raise ValidationError(
                f"Endpoint {endpoint['EndpointName']} has {len(variants)} variants; "
                "VariantName must name the one that hosts the inference component."
            )
        variant = variants[0]
    else:
        matching = [v for v in variants if v["VariantName"] == variant_name]
        if not matching:
            raise ValidationError(
                f"Endpoint {endpoint['EndpointName']} has no variant {variant_name}; variants: "
                f"{sorted(v['VariantName'] for v in variants)}"
            )
        variant = matching[0]
    if "ModelName" in variant or "InstanceType" not in variant:
        raise ValidationError(
            f"Variant {variant['VariantName']} of endpoint {endpoint['EndpointName']} cannot "
            "host inference components: that takes a variant with an InstanceType and no "
            "ModelName in its endpoint config."
        )
    return variant


def _check_specification(
    ctx: Context, specification: dict[str, Any], variant: dict[str, Any]
) -> None:
    has_model = "ModelName" in specification
    container = specification.get("Container")
    if has_model == (container is not None):
        raise ValidationError(
            "Specification needs exactly one of ModelName (a model created with CreateModel) "
            "or Container."
        )
    if has_model:
        model = require(ctx, kinds.MODEL, "model", specification["ModelName"])
        if is_pipeline(model) or model.get("PrimaryContainer", {}).get("Mode") == "MultiModel":
            raise ValidationError(
                f"Model {model['ModelName']} is a multi-container or multi-model model; an "
                "inference component hosts a single-model container."
            )
    elif not (container or {}).get("Image"):
        raise ValidationError("Specification.Container.Image is required.")
    if "ComputeResourceRequirements" not in specification:
        raise ValidationError("Specification.ComputeResourceRequirements is required.")
    compute = specification["ComputeResourceRequirements"]
    needs = Needs.of(specification)
    if compute.get("MaxMemoryRequiredInMb", needs.memory_mb) < needs.memory_mb:
        raise ValidationError(
            "ComputeResourceRequirements.MaxMemoryRequiredInMb must be at least "
            "MinMemoryRequiredInMb."
        )
    instance_type = get_instance_type(variant["InstanceType"])
    if instance_type is None:  # the config was checked; a catalog edit could remove it
        raise ValidationError(f"Instance type {variant['InstanceType']} left the catalog.")
    if not fits(needs, room(instance_type)):
        raise ValidationError(
            f"A copy needs {needs.describe()}, more than one {instance_type.name} instance "
            f"has ({room(instance_type).describe()})."
        )


def create_inference_component(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse_unsupported(params)
    name = params["InferenceComponentName"]
    endpoint = require(ctx, kinds.ENDPOINT, "endpoint", params["EndpointName"])
    if endpoint["EndpointStatus"] in ("Deleting", "Failed"):
        raise ValidationError(
            f"Endpoint {endpoint['EndpointName']} is {endpoint['EndpointStatus']}; it cannot "
            "take inference components."
        )
    if "Specification" not in params or "RuntimeConfig" not in params:
        raise ValidationError("Specification and RuntimeConfig are required.")
    variant = _host_variant(ctx, endpoint, params.get("VariantName"))
    _check_specification(ctx, params["Specification"], variant)
    arn = ctx.arn("inference-component", name)
    now = ctx.now()
    record = {
        "InferenceComponentName": name,
        "InferenceComponentArn": arn,
        "EndpointName": endpoint["EndpointName"],
        "EndpointArn": endpoint["EndpointArn"],
        "VariantName": variant["VariantName"],
        "Specification": params["Specification"],
        "RuntimeConfig": {
            "DesiredCopyCount": params["RuntimeConfig"]["CopyCount"],
            "CurrentCopyCount": 0,
        },
        "InferenceComponentStatus": "Creating",
        "CreationTime": now,
        "LastModifiedTime": now,
        "_arn": arn,
        # Bumped by every change of Specification: copies of an older one are replaced.
        "_generation": 1,
    }
    create(ctx, KIND, LABEL, name, record, params.get("Tags"))
    ctx.notify()
    return {"InferenceComponentArn": arn}


def describe_inference_component(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require(ctx, KIND, LABEL, params["InferenceComponentName"]))


def list_inference_components(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    records = [
        r
        for r in ctx.store.list(KIND)
        if params.get("EndpointNameEquals", r["EndpointName"]) == r["EndpointName"]
        and params.get("VariantNameEquals", r["VariantName"]) == r["VariantName"]
    ]
    return paginate(
        records,
        params,
        name_key="InferenceComponentName",
        sort_keys={
            "Name": "InferenceComponentName",
            "CreationTime": "CreationTime",
            "Status": "InferenceComponentStatus",
        },
        summarize=lambda r: {
            k: r[k]
            for k in (
                "InferenceComponentName",
                "InferenceComponentArn",
                "EndpointName",
                "EndpointArn",
                "VariantName",
                "InferenceComponentStatus",
                "CreationTime",
                "LastModifiedTime",
            )
        },
        result_key="InferenceComponents",
        status_key="InferenceComponentStatus",
    )


def _change(ctx: Context, name: str, apply: Any) -> dict[str, Any]:
    record = require(ctx, KIND, LABEL, name)
    if record["InferenceComponentStatus"] not in _CHANGEABLE:
        raise ValidationError(
            f"Inference component {name} is {record['InferenceComponentStatus']}; it cannot "
            "be updated."
        )

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        if current["InferenceComponentStatus"] == "Deleting":
            return None
        apply(current)
        if current["InferenceComponentStatus"] != "Creating":
            current["InferenceComponentStatus"] = "Updating"
        current["LastModifiedTime"] = round(time.time(), 3)
        return current

    ctx.store.modify(KIND, name, change)
    ctx.notify()
    return {"InferenceComponentArn": record["InferenceComponentArn"]}


def update_inference_component(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse_unsupported(params)
    name = params["InferenceComponentName"]
    record = require(ctx, KIND, LABEL, name)
    specification = params.get("Specification")
    deployment = params.get("DeploymentConfig")
    if deployment is not None and specification is None:
        raise ValidationError(
            "DeploymentConfig says how a new Specification is rolled out; it takes a Specification."
        )
    if specification is not None:
        endpoint = require(ctx, kinds.ENDPOINT, "endpoint", record["EndpointName"])
        _check_specification(
            ctx, specification, _host_variant(ctx, endpoint, record["VariantName"])
        )

    def apply(current: dict[str, Any]) -> None:
        if specification is not None:
            # The specification that serves now, to roll back to; an update on top of an
            # unfinished one keeps the last that served, and one of a component that never
            # served has nothing to go back to.
            if "_previous" not in current and current["InferenceComponentStatus"] in (
                "InService",
                "Updating",
            ):
                current["_previous"] = {
                    "Specification": current["Specification"],
                    "generation": current["_generation"],
                }
            current["Specification"] = specification
            current["_generation"] += 1
            current["_update_started"] = round(time.time(), 3)
            current.pop("_rolled_back", None)
            # How this update rolls out (the defaults without one); Describe shows the
            # last one given.
            current["_deployment"] = deployment or {}
            if deployment is not None:
                current["LastDeploymentConfig"] = deployment
        if "RuntimeConfig" in params:
            current["RuntimeConfig"]["DesiredCopyCount"] = params["RuntimeConfig"]["CopyCount"]

    return _change(ctx, name, apply)


def update_inference_component_runtime_config(
    ctx: Context, params: dict[str, Any]
) -> dict[str, Any]:
    count = params["DesiredRuntimeConfig"]["CopyCount"]

    def apply(current: dict[str, Any]) -> None:
        current["RuntimeConfig"]["DesiredCopyCount"] = count

    return _change(ctx, params["InferenceComponentName"], apply)


def delete_inference_component(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Deleting: the controller stops the copies, then removes the record."""
    name = params["InferenceComponentName"]
    record = require(ctx, KIND, LABEL, name)

    def change(current: dict[str, Any]) -> dict[str, Any]:
        current["InferenceComponentStatus"] = "Deleting"
        current["LastModifiedTime"] = round(time.time(), 3)
        return current

    ctx.store.modify(KIND, name, change)
    ctx.store.delete_tags(record["InferenceComponentArn"])
    ctx.notify()
    return {}
