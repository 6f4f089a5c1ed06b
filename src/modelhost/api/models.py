"""CreateModel / DescribeModel / ListModels / DeleteModel."""

from __future__ import annotations

from typing import Any

from modelhost.api import model_packages
from modelhost.api.context import Context
from modelhost.api.listing import paginate
from modelhost.api.resources import copy_optional, create, public, require
from modelhost.domain import kinds
from modelhost.domain.containers import DIRECT, SERIAL, hostname
from modelhost.errors import ValidationError

KIND = kinds.MODEL


def _containers(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's containers as given: one (PrimaryContainer, or a one-element
    Containers) or an inference pipeline (botocore's validator holds it to 15)."""
    containers = params.get("Containers") or []
    primary = params.get("PrimaryContainer")
    if primary and containers:
        raise ValidationError("Specify either PrimaryContainer or Containers, not both.")
    if not primary and not containers:
        raise ValidationError("Either PrimaryContainer or Containers must be specified.")
    given = [primary] if primary else list(containers)
    for container in given:
        if container.get("Mode") == "MultiModel":
            if len(given) > 1:
                raise ValidationError(
                    "A container with Mode=MultiModel must be the model's only container; "
                    "inference pipelines of multi-model containers are not supported."
                )
            _check_multi_model(container)
        if "Image" not in container and "ModelPackageName" not in container:
            raise ValidationError("Container must specify Image.")
    return given


def _check_pipeline(params: dict[str, Any], containers: list[dict[str, Any]]) -> None:
    """Hostnames name the containers of a pipeline (in errors, and for Direct invocation,
    where each container must have one); two containers may not share one."""
    mode = params.get("InferenceExecutionConfig", {}).get("Mode")
    if len(containers) == 1:
        if mode == DIRECT:
            raise ValidationError(
                "InferenceExecutionConfig.Mode Direct needs a model with more than one "
                "container in Containers."
            )
        return
    names = [c.get("ContainerHostname") for c in containers]
    if mode == DIRECT and None in names:
        raise ValidationError(
            f"Container {names.index(None) + 1} has no ContainerHostname; every container of a "
            "model with InferenceExecutionConfig.Mode Direct needs one."
        )
    # Unnamed containers of a serial pipeline run as container-<position>; no two may share
    # a name (their logs and folders are named after it).
    effective = [hostname(c, i) for i, c in enumerate(containers)]
    if len(set(effective)) != len(effective):
        duplicate = next(n for n in effective if effective.count(n) > 1)
        raise ValidationError(
            f"ContainerHostname {duplicate} names more than one container (an unnamed "
            "container of a pipeline is called container-<its position from 1>)."
        )


def _check_multi_model(container: dict[str, Any]) -> None:
    """A multi-model container serves the models under one prefix, loaded on demand (see
    modelhost.router.multimodel): ModelDataUrl names the prefix."""
    if "ModelDataSource" in container or "ModelPackageName" in container:
        raise ValidationError(
            "A container with Mode=MultiModel takes its models from ModelDataUrl (an S3 "
            "prefix); ModelDataSource and ModelPackageName are not supported with it."
        )
    url = container.get("ModelDataUrl")
    if not url:
        raise ValidationError(
            "A container with Mode=MultiModel must give ModelDataUrl: the S3 prefix under "
            "which its models are."
        )
    if url.endswith((".tar.gz", ".tgz", ".tar")):
        raise ValidationError(
            f"ModelDataUrl {url[:128]} of a MultiModel container must be a prefix (the "
            "folder of the models), not a model archive."
        )
    setting = container.get("MultiModelConfig", {}).get("ModelCacheSetting", "Enabled")
    if setting != "Enabled":
        raise ValidationError(
            "MultiModelConfig.ModelCacheSetting=Disabled is not supported by modelhost: "
            "loaded models are always cached."
        )


def _check_environment(container: dict[str, Any]) -> None:
    for key, value in container.get("Environment", {}).items():
        if "\x00" in key or "\x00" in value:
            raise ValidationError(
                f"Environment variable {key[:64]!r} contains a NUL character, which no "
                "process environment can hold."
            )


# Members a container naming a model package may give beside the name: the rest comes
# from the package.
_BESIDE_PACKAGE = frozenset({"ModelPackageName", "Environment", "ContainerHostname"})


def _resolve_package(ctx: Context, container: dict[str, Any]) -> dict[str, Any]:
    """A container naming a model package (name or versioned ARN) runs the package's
    container: resolved once, here, so the deployed model keeps working however the
    registry changes later, as on SageMaker."""
    if "ModelPackageName" not in container:
        return container
    extra = sorted(set(container) - _BESIDE_PACKAGE)
    if extra:
        raise ValidationError(
            f"A container with ModelPackageName takes its {', '.join(extra)} from the model "
            "package; give only ModelPackageName and Environment."
        )
    package = model_packages.deployable(ctx, container["ModelPackageName"])
    resolved = model_packages.container_of(package)
    environment = {**resolved.get("Environment", {}), **container.get("Environment", {})}
    if environment:
        resolved["Environment"] = environment
    resolved["ModelPackageName"] = package["ModelPackageArn"]
    if "ContainerHostname" in container:
        resolved["ContainerHostname"] = container["ContainerHostname"]
    return resolved


def _check_local_paths(ctx: Context, container: dict[str, Any]) -> None:
    """Local artifact paths (which the request validation lets through, unlike SageMaker)
    only where the operator allows them: otherwise any caller who may create a model could
    have the server read any file it can read."""
    if ctx.settings.allow_local_paths:
        return
    source = container.get("ModelDataSource", {}).get("S3DataSource", {})
    for field, url in (
        ("ModelDataUrl", container.get("ModelDataUrl")),
        ("ModelDataSource.S3DataSource.S3Uri", source.get("S3Uri")),
    ):
        if isinstance(url, str) and url.startswith(("file://", "/")):
            raise ValidationError(
                f"{field} {url[:128]} is a local path; this server accepts s3:// URIs only "
                "(an operator can allow local paths with MODELHOST_ALLOW_LOCAL_PATHS=1)."
            )


def create_model(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ModelName"]
    given = _containers(params)
    _check_pipeline(params, given)
    containers = [_resolve_package(ctx, c) for c in given]
    for container in containers:
        _check_environment(container)
        _check_local_paths(ctx, container)
    arn = ctx.arn("model", name)
    record: dict[str, Any] = {
        "ModelName": name,
        "ModelArn": arn,
        "CreationTime": ctx.now(),
        "EnableNetworkIsolation": params.get("EnableNetworkIsolation", False),
        "_arn": arn,
    }
    if len(containers) == 1:
        record["PrimaryContainer"] = containers[0]
    else:
        # As SageMaker shows a multi-container model: its Containers and the mode they
        # run in, Serial unless the request said otherwise.
        record["Containers"] = containers
        record["InferenceExecutionConfig"] = {"Mode": SERIAL}
    copy_optional(params, record, ("ExecutionRoleArn", "VpcConfig", "InferenceExecutionConfig"))
    create(ctx, KIND, "model", name, record, params.get("Tags"))
    return {"ModelArn": arn}


def describe_model(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require(ctx, KIND, "model", params["ModelName"]))


def list_models(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return paginate(
        ctx.store.list(KIND),
        params,
        name_key="ModelName",
        sort_keys={"Name": "ModelName", "CreationTime": "CreationTime"},
        summarize=lambda r: {k: r[k] for k in ("ModelName", "ModelArn", "CreationTime")},
        result_key="Models",
    )


def delete_model(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    record = require(ctx, KIND, "model", params["ModelName"])
    ctx.store.delete(KIND, params["ModelName"], arn=record["ModelArn"])
    return {}
