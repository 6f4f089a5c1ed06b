"""From an endpoint's desired state to instance specs: which built-in handlers an image
means, where the model's artifacts are unpacked, what environment an instance gets."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
from pathlib import Path
from typing import Any

from modelhost import metrics
from modelhost.catalog import InstanceType, get_instance_type, serverless_instance_type
from modelhost.config import Settings
from modelhost.domain.containers import containers_of, execution_mode, hostname, is_pipeline
from modelhost.instances import ContainerSpec, Instance, InstanceBackend, InstanceSpec
from modelhost.modelserver import ENV_MULTI_MODEL
from modelhost.router import ENV_MAX_LOADED, ModelSource
from modelhost.storage import ObjectStore, check_model_data, prepare_model_dir

_unpack_locks: dict[Path, asyncio.Lock] = {}


def remove_partial_models(settings: Settings) -> None:
    """Unpacking happens in hidden folders renamed into place when complete; a server
    killed mid-unpack leaves one behind, which nothing will ever use."""
    if not settings.models_dir.is_dir():
        return
    for leftover in settings.models_dir.glob(".*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def framework_for_image(image: str) -> str:
    """Built-in model servers by image name. Any image naming scikit-learn or ONNX gets
    those defaults (so SageMaker's own sklearn images work); anything else runs user code."""
    lowered = image.lower()
    if "onnx" in lowered:
        return "onnx"
    if "sklearn" in lowered or "scikit" in lowered:
        return "sklearn"
    return "python"


def is_multi_model(model: dict[str, Any]) -> bool:
    """A pipeline's containers are never multi-model ones (CreateModel refuses that)."""
    return bool(model.get("PrimaryContainer", {}).get("Mode") == "MultiModel")


def model_source(
    settings: Settings,
    objects: ObjectStore,
    model: dict[str, Any],
    model_dir: Path,
    variant: dict[str, Any],
) -> ModelSource | None:
    """A multi-model variant's models: under its ModelDataUrl, unpacked on demand into
    `model_dir` (see modelhost.router.multimodel); None for a single-model variant."""
    if not is_multi_model(model):
        return None
    container = model["PrimaryContainer"]
    prefix = str(container["ModelDataUrl"])
    limit = container.get("Environment", {}).get(ENV_MAX_LOADED)
    max_loaded = None
    if limit:
        if not limit.isdigit() or int(limit) < 1:
            raise ValueError(f"{ENV_MAX_LOADED}={limit[:32]} must be a whole number, at least 1")
        max_loaded = int(limit)
    return ModelSource(
        prefix=prefix if prefix.endswith("/") else prefix + "/",
        root=model_dir,
        objects=objects,
        max_bytes=settings.max_model_bytes,
        max_loaded=max_loaded,
        download_timeout_s=_optional_float(variant.get("ModelDataDownloadTimeoutInSeconds")),
    )


def model_data_url(container: dict[str, Any]) -> str | None:
    if url := container.get("ModelDataUrl"):
        return str(url)
    source = container.get("ModelDataSource", {}).get("S3DataSource")
    return str(source["S3Uri"]) if source else None


async def prepare_model(
    settings: Settings,
    objects: ObjectStore,
    model: dict[str, Any],
    timeout_s: float | None = None,
) -> Path:
    """Unpack the model's artifacts once per model version; instances share the folder
    read-only. The folder name hashes what identifies the artifacts, so a model re-created
    under the same name with new data gets a new folder. Reading them may take at most
    `timeout_s` (a variant's ModelDataDownloadTimeoutInSeconds). A multi-container model's
    folder holds one folder per container, named by its position (`0`, `1`, …).

    With the ray backend each instance unpacks the data on its own node (with the same
    checks and byte budget), so here it is only checked to be there (a HEAD, or a listing
    for a prefix) and never read: a missing model fails the deployment at once, and the
    data crosses the network once per node instead of once more to this machine. The
    folder returned is then never made; the ray backend does not read it."""
    urls = [model_data_url(c) for c in containers_of(model)]
    source = None if is_pipeline(model) else submitted_source(containers_of(model)[0])
    identity = f"{model['ModelArn']}|{model['CreationTime']}|{'|'.join(map(str, urls))}"
    if not is_pipeline(model):
        identity = f"{model['ModelArn']}|{model['CreationTime']}|{urls[0]}|{source}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    dest = settings.models_dir / f"{model['ModelName']}-{digest}"
    if settings.instance_backend == "ray" and not is_pipeline(model) and urls[0] is not None:
        await asyncio.to_thread(check_model_data, objects, urls[0])
        return dest
    # Two endpoints deploying the same model at once must not unpack it twice: the
    # second swap would replace a folder the first one's instances already use.
    async with _unpack_locks.setdefault(dest, asyncio.Lock()):
        if dest.is_dir():
            return dest
        settings.models_dir.mkdir(parents=True, exist_ok=True)
        if is_pipeline(model):
            await asyncio.to_thread(_unpack_each, settings, objects, urls, dest, timeout_s)
            return dest
        if urls[0] is None or is_multi_model(model):
            # A multi-model variant's models are unpacked here one by one, on demand.
            dest.mkdir()
        else:
            await asyncio.to_thread(
                prepare_model_dir,
                objects,
                urls[0],
                dest,
                settings.max_model_bytes,
                timeout_s=timeout_s,
            )
        if source is not None:
            try:
                # As SageMaker's framework containers do: the submitted source archive
                # is the model's code folder, in place of any the artifacts carry.
                await asyncio.to_thread(
                    prepare_model_dir,
                    objects,
                    source,
                    dest / "code",
                    settings.max_model_bytes,
                    timeout_s=timeout_s,
                )
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    return dest


def _unpack_each(
    settings: Settings,
    objects: ObjectStore,
    urls: list[str | None],
    dest: Path,
    timeout_s: float | None,
) -> None:
    """Every container's artifacts into a hidden staging folder renamed into place when
    all are there, so a failure leaves no half-prepared pipeline behind."""
    staging = dest.parent / f".{dest.name}.containers"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for index, url in enumerate(urls):
            if url is None:
                (staging / str(index)).mkdir()
            else:
                prepare_model_dir(
                    objects,
                    url,
                    staging / str(index),
                    settings.max_model_bytes,
                    timeout_s=timeout_s,
                )
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def submitted_source(container: dict[str, Any]) -> str | None:
    """SAGEMAKER_SUBMIT_DIRECTORY when it names an archive in the object store (what the
    sagemaker SDK's framework models upload as `sourcedir.tar.gz`)."""
    value = container.get("Environment", {}).get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    return str(value) if value.startswith("s3://") else None


def instance_spec(
    settings: Settings,
    endpoint: str,
    variant: dict[str, Any],
    model: dict[str, Any],
    model_dir: Path,
    index: int,
) -> InstanceSpec:
    instance_type = (
        serverless_instance_type(variant["ServerlessConfig"]["MemorySizeInMB"])
        if "ServerlessConfig" in variant
        else get_instance_type(variant["InstanceType"])
    )
    if instance_type is None:  # the API checked it; a catalog edit could still remove it
        raise RuntimeError(f"instance type {variant['InstanceType']} left the catalog")
    containers = containers_of(model)
    container = containers[0]
    spec = InstanceSpec(
        instance_id="",
        model_dir=model_dir,
        framework=framework_for_image(container["Image"]),
        instance_type=instance_type,
        environment=_environment(model),
        model_data_url=model_data_url(container) or "",
        image=container["Image"],
        startup_timeout_s=_optional_float(
            variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
        ),
    )
    if is_pipeline(model):
        spec = dataclasses.replace(
            spec,
            containers=tuple(
                ContainerSpec(
                    hostname=hostname(c, i),
                    model_dir=model_dir / str(i),
                    framework=framework_for_image(c["Image"]),
                    environment=dict(c.get("Environment", {})),
                    image=c["Image"],
                )
                for i, c in enumerate(containers)
            ),
            execution_mode=execution_mode(model),
        )
    return numbered(settings, spec, endpoint, variant["VariantName"], index)


def _environment(model: dict[str, Any]) -> dict[str, str]:
    environment = dict(containers_of(model)[0].get("Environment", {}))
    if is_multi_model(model):
        environment[ENV_MULTI_MODEL] = "true"
    return environment


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def numbered(
    settings: Settings, spec: InstanceSpec, endpoint: str, variant: str, index: int
) -> InstanceSpec:
    """The spec of instance number `index` of a variant: its id and its own log file. A
    replacement is the dead instance's spec under a new number."""
    return dataclasses.replace(
        spec,
        instance_id=f"{endpoint}-{variant}-{index}",
        endpoint=endpoint,
        log_path=settings.logs_dir / endpoint / f"{variant}-{index}.log",
    )


class StartFailed(Exception):
    """An instance of a group could not be started or did not become ready; the message
    names it and says why."""


async def start_all(
    backend: InstanceBackend, specs: list[InstanceSpec], timeout_s: float, started: list[Instance]
) -> list[Instance]:
    """Start every spec, then wait until all of them answer /ping. Each instance is added
    to `started` as soon as it exists, so the caller can stop them whatever happens."""
    instances = []
    for spec in specs:
        try:
            instance = await backend.start(spec)
        except (OSError, ValueError) as exc:
            raise StartFailed(f"Instance {spec.instance_id} could not be started: {exc}") from exc
        started.append(instance)
        instances.append(instance)
    results = await asyncio.gather(
        *(i.wait_ready(i.spec.startup_timeout_s or timeout_s) for i in instances),
        return_exceptions=True,
    )
    for instance, result in zip(instances, results, strict=True):
        if isinstance(result, BaseException):
            raise StartFailed(f"Instance {instance.spec.instance_id} failed to start: {result}")
    return instances


async def start_ready(backend: InstanceBackend, spec: InstanceSpec, timeout_s: float) -> Instance:
    """Start one instance and wait for its /ping; one that does not get there (or whose
    caller gives up) is stopped, never left running unseen."""
    instance = await backend.start(spec)
    try:
        await instance.wait_ready(spec.startup_timeout_s or timeout_s)
    except BaseException:
        await instance.stop()
        raise
    return instance


def charge(name: str, variant: str, instance: Instance, elapsed_s: float) -> None:
    """Charge `elapsed_s` of running time to the instance's meter (seconds and cost at
    its type's hourly list price), if it is still running."""
    if instance.is_alive():
        charge_instances(name, variant, instance.spec.instance_type, 1, elapsed_s)


def charge_instances(
    name: str, variant: str, kind: InstanceType, count: int, elapsed_s: float
) -> None:
    """Charge `elapsed_s` of `count` instances of type `kind` to the variant's meter."""
    labels = (name, variant, kind.name)
    metrics.INSTANCE_SECONDS.labels(*labels).inc(count * elapsed_s)
    metrics.INSTANCE_COST.labels(*labels).inc(count * elapsed_s * kind.usd_per_hour / 3600)
