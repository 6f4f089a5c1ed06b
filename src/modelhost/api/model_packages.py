"""The model registry: CreateModelPackageGroup / Describe / List / Delete and
CreateModelPackage / Describe / List / Update / Delete.

A model package is a deployable description of a model (its container: image, artifacts,
environment) plus what it supports and whether it is approved. Packages created in a group
are that group's numbered versions (ARN `model-package/GROUP/N`); a package without a group
is unversioned (`model-package/NAME`). A Model whose container names a package
(`ModelPackageName`) runs the package's container (models.py resolves it).

Records are keyed by the lower-case resource part of their ARN (`group/3`, `name`), so an
ARN or a name finds its record whatever its case, as on SageMaker. Fields this registry
does not act on are refused by name rather than stored and ignored.
"""

from __future__ import annotations

from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import paginate
from modelhost.api.resources import copy_optional, public
from modelhost.api.tags import check_count
from modelhost.domain import kinds
from modelhost.errors import ValidationError

GROUP_KIND = kinds.MODEL_PACKAGE_GROUP
KIND = kinds.MODEL_PACKAGE

# Request members of CreateModelPackage kept and echoed back as given: descriptive
# metadata SageMaker itself only stores.
_KEPT = (
    "ModelPackageDescription",
    "ModelPackageRegistrationType",
    "MetadataProperties",
    "ModelMetrics",
    "DriftCheckBaselines",
    "CustomerMetadataProperties",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "SourceUri",
    "SkipModelValidation",
)
# Members that would need machinery modelhost does not have (validation jobs, algorithms,
# marketplace listings, KMS, model cards, alternative inference specifications).
_REFUSED = (
    "ValidationSpecification",
    "SourceAlgorithmSpecification",
    "AdditionalInferenceSpecifications",
    "SecurityConfig",
    "ModelCard",
    "ModelLifeCycle",
    "ManagedStorageType",
)
# The container members a model made from a package runs with.
_RUN_KEYS = ("Image", "ModelDataUrl", "ModelDataSource", "Environment")
_UPDATE_REFUSED = ("AdditionalInferenceSpecificationsToAdd", "ModelCard", "ModelLifeCycle")
# Container members an instance runs with; the others are refused by name.
_CONTAINER_KEYS = frozenset(
    {
        "ContainerHostname",
        "Image",
        "ModelDataUrl",
        "ModelDataSource",
        "Environment",
        "Framework",
        "FrameworkVersion",
        "NearestModelName",
        "ModelDataETag",
    }
)


def _refuse(params: dict[str, Any], members: tuple[str, ...], operation: str) -> None:
    given = [m for m in members if m in params]
    if given:
        raise ValidationError(f"{operation}: {', '.join(given)} is not supported by modelhost.")


# --- groups ---------------------------------------------------------------------------


def _group_arn(ctx: Context, name: str) -> str:
    return ctx.arn("model-package-group", name)


def require_group(ctx: Context, name: str) -> dict[str, Any]:
    key = name.rpartition("model-package-group/")[2] if name.startswith("arn:") else name
    record = ctx.store.get(GROUP_KIND, key.lower())
    if record is None:
        raise ValidationError(f"ModelPackageGroup {name} does not exist.")
    return record


def create_model_package_group(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse(params, ("ManagedConfiguration",), "CreateModelPackageGroup")
    name = params["ModelPackageGroupName"]
    arn = _group_arn(ctx, name)
    record = {
        "ModelPackageGroupName": name,
        "ModelPackageGroupArn": arn,
        "CreationTime": ctx.now(),
        "ModelPackageGroupStatus": "Completed",
        "_arn": arn,
        "_latest_version": 0,
    }
    copy_optional(params, record, ("ModelPackageGroupDescription",))
    _insert(ctx, GROUP_KIND, name.lower(), record, params.get("Tags"), f"Model Package Group {arn}")
    return {"ModelPackageGroupArn": arn}


def describe_model_package_group(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require_group(ctx, params["ModelPackageGroupName"]))


def list_model_package_groups(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse(params, ("CrossAccountFilterOption",), "ListModelPackageGroups")
    return paginate(
        ctx.store.list(GROUP_KIND),
        params,
        name_key="ModelPackageGroupName",
        sort_keys={"Name": "ModelPackageGroupName", "CreationTime": "CreationTime"},
        summarize=public,
        result_key="ModelPackageGroupSummaryList",
    )


def delete_model_package_group(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    group = require_group(ctx, params["ModelPackageGroupName"])
    name = group["ModelPackageGroupName"]
    if any(_in_group(p, name) for p in ctx.store.list(KIND)):
        raise ValidationError(
            f"Model Package Group {group['ModelPackageGroupArn']} still has model package "
            "versions; delete them first."
        )
    ctx.store.delete(GROUP_KIND, name.lower(), arn=group["_arn"])
    return {}


# --- packages -------------------------------------------------------------------------


def _in_group(package: dict[str, Any], group: str) -> bool:
    return str(package.get("ModelPackageGroupName", "")).lower() == group.lower()


def _key(name_or_arn: str) -> str:
    """The store key of a package named by ARN (versioned or not) or by name."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn.partition(":model-package/")[2].lower()
    return name_or_arn.lower()


def require_package(ctx: Context, name_or_arn: str) -> dict[str, Any]:
    record = ctx.store.get(KIND, _key(name_or_arn)) if _key(name_or_arn) else None
    if record is None:
        raise ValidationError(f"ModelPackage {name_or_arn} does not exist.")
    return record


def container_of(package: dict[str, Any]) -> dict[str, Any]:
    """What a model made from the package runs: its one container's image, artifacts and
    environment."""
    (source,) = package["InferenceSpecification"]["Containers"]
    return {key: source[key] for key in _RUN_KEYS if key in source}


def deployable(ctx: Context, name_or_arn: str) -> dict[str, Any]:
    """The package a model may be made from: a versioned one must be Approved first, as
    on SageMaker."""
    package = require_package(ctx, name_or_arn)
    status = package.get("ModelApprovalStatus")
    if "ModelPackageVersion" in package and status != "Approved":
        raise ValidationError(
            f"Model package {package['ModelPackageArn']} is {status}; a versioned model "
            "package must be Approved to be deployed (UpdateModelPackage "
            "ModelApprovalStatus=Approved)."
        )
    return package


def _check_inference_specification(spec: dict[str, Any]) -> None:
    containers = spec["Containers"]
    if len(containers) != 1:
        raise ValidationError(
            "InferenceSpecification.Containers: modelhost runs exactly one container per "
            f"model package; got {len(containers)}."
        )
    (container,) = containers
    unsupported = sorted(set(container) - _CONTAINER_KEYS)
    if unsupported:
        raise ValidationError(
            f"InferenceSpecification.Containers.1: {', '.join(unsupported)} is not supported "
            "by modelhost."
        )
    if "Image" not in container:
        raise ValidationError("InferenceSpecification.Containers.1.Image is required.")


def create_model_package(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse(params, _REFUSED, "CreateModelPackage")
    if params.get("CertifyForMarketplace"):
        raise ValidationError("CreateModelPackage: CertifyForMarketplace is not supported.")
    group_name = params.get("ModelPackageGroupName")
    name = params.get("ModelPackageName")
    if bool(group_name) == bool(name):
        raise ValidationError(
            "Give either ModelPackageGroupName (a versioned package) or ModelPackageName "
            "(an unversioned one), not both or neither."
        )
    if "InferenceSpecification" not in params:
        raise ValidationError(
            "CreateModelPackage: InferenceSpecification is required (modelhost packages "
            "describe deployable containers)."
        )
    spec = params["InferenceSpecification"]
    _check_inference_specification(spec)
    if "ModelApprovalStatus" in params and not group_name:
        raise ValidationError("ModelApprovalStatus applies to versioned model packages only.")
    if group_name and params.get("Tags"):
        raise ValidationError(
            "A versioned model package takes its group's tags; Tags cannot be given with "
            "ModelPackageGroupName."
        )

    record: dict[str, Any] = {
        "InferenceSpecification": spec,
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        "CertifyForMarketplace": False,
    }
    copy_optional(params, record, _KEPT)
    if group_name:
        group = require_group(ctx, group_name)
        token = params.get("ClientToken")
        if token:
            for package in ctx.store.list(KIND):
                if _in_group(package, group_name) and package.get("_client_token") == token:
                    return {"ModelPackageArn": package["ModelPackageArn"]}
        version = _next_version(ctx, group["ModelPackageGroupName"])
        key = f"{group['ModelPackageGroupName'].lower()}/{version}"
        record.update(
            ModelPackageName=group["ModelPackageGroupName"],
            ModelPackageGroupName=group["ModelPackageGroupName"],
            ModelPackageVersion=version,
            ModelApprovalStatus=params.get("ModelApprovalStatus", "PendingManualApproval"),
            _client_token=token,
        )
    else:
        key = str(name).lower()
        record["ModelPackageName"] = name
    arn = f"arn:aws:sagemaker:{ctx.settings.region}:{ctx.settings.account_id}:model-package/{key}"
    now = ctx.now()
    record.update(ModelPackageArn=arn, CreationTime=now, LastModifiedTime=now, _arn=arn)
    _insert(ctx, KIND, key, record, params.get("Tags"), f"Model Package {arn}")
    return {"ModelPackageArn": arn}


def _next_version(ctx: Context, group: str) -> int:
    """Versions are numbered per group, 1, 2, ...; the store's atomic read-modify-write
    settles two registrations at once."""

    def bump(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "_latest_version": record.get("_latest_version", 0) + 1}

    updated = ctx.store.modify(GROUP_KIND, group.lower(), bump)
    if updated is None:
        raise ValidationError(f"ModelPackageGroup {group} does not exist.")
    return int(updated["_latest_version"])


def describe_model_package(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse(params, ("IncludedData",), "DescribeModelPackage")
    return public(require_package(ctx, params["ModelPackageName"]))


_SUMMARY_KEYS = (
    "ModelPackageName",
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "ModelPackageDescription",
    "CreationTime",
    "ModelPackageStatus",
    "ModelApprovalStatus",
    "ModelPackageRegistrationType",
)


def list_model_packages(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    records = ctx.store.list(KIND)
    group = params.get("ModelPackageGroupName")
    # SageMaker lists unversioned packages unless asked otherwise, and a group's versions
    # when a group is named.
    kind = params.get("ModelPackageType", "Versioned" if group else "Unversioned")
    if kind == "Versioned":
        records = [r for r in records if "ModelPackageVersion" in r]
    elif kind == "Unversioned":
        records = [r for r in records if "ModelPackageVersion" not in r]
    if group:
        records = [r for r in records if _in_group(r, group)]
    if status := params.get("ModelApprovalStatus"):
        records = [r for r in records if r.get("ModelApprovalStatus") == status]
    return paginate(
        records,
        params,
        name_key="ModelPackageName",
        sort_keys={"Name": "ModelPackageName", "CreationTime": "CreationTime"},
        summarize=lambda r: {k: r[k] for k in _SUMMARY_KEYS if k in r},
        result_key="ModelPackageSummaryList",
    )


def update_model_package(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    _refuse(params, _UPDATE_REFUSED, "UpdateModelPackage")
    if "InferenceSpecification" in params:
        _check_inference_specification(params["InferenceSpecification"])
    record = require_package(ctx, params["ModelPackageArn"])
    if "ModelApprovalStatus" in params and "ModelPackageVersion" not in record:
        raise ValidationError("ModelApprovalStatus applies to versioned model packages only.")

    def change(current: dict[str, Any]) -> dict[str, Any]:
        copy_optional(
            params,
            current,
            (
                "ModelApprovalStatus",
                "ApprovalDescription",
                "InferenceSpecification",
                "SourceUri",
                "ModelPackageRegistrationType",
            ),
        )
        metadata = {
            **current.get("CustomerMetadataProperties", {}),
            **params.get("CustomerMetadataProperties", {}),
        }
        for key in params.get("CustomerMetadataPropertiesToRemove", []):
            metadata.pop(key, None)
        if metadata:
            current["CustomerMetadataProperties"] = metadata
        else:
            current.pop("CustomerMetadataProperties", None)
        current["LastModifiedTime"] = ctx.now()
        return current

    ctx.store.modify(KIND, _key(record["ModelPackageArn"]), change)
    return {"ModelPackageArn": record["ModelPackageArn"]}


def delete_model_package(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    record = require_package(ctx, params["ModelPackageName"])
    ctx.store.delete(KIND, _key(record["ModelPackageArn"]), arn=record["_arn"])
    return {}


def _insert(
    ctx: Context,
    kind: str,
    key: str,
    record: dict[str, Any],
    tags: list[dict[str, str]] | None,
    label: str,
) -> None:
    wanted = {t["Key"]: t["Value"] for t in tags or []}
    check_count(record["_arn"], set(wanted))
    if not ctx.store.insert(kind, key, record, arn=record["_arn"], tags=wanted):
        raise ValidationError(f"{label} already exists.")
