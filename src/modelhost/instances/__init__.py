"""Instance backends: where a model server runs.

Every backend starts one model server per (variant, replica) that honours the SageMaker
container contract (GET /ping, POST /invocations on a port). The rest of modelhost only
sees `Instance` and `InstanceSpec`, so a process, a container or a Ray actor look alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelhost.instances.base import (
    ContainerSpec,
    Instance,
    InstanceBackend,
    InstanceSpec,
    ResourceUsage,
)
from modelhost.instances.cgroups import scope_key
from modelhost.instances.client import (
    InstanceClient,
    InstanceUnreachable,
    Response,
    grant_token,
    revoke_token,
    token_header,
)
from modelhost.instances.container import ContainerBackend, ContainerInstance
from modelhost.instances.pipeline import Pipeline, PipelineInstance
from modelhost.instances.process import ProcessBackend
from modelhost.instances.routing import RoutingBackend

if TYPE_CHECKING:
    from modelhost.config import Settings

#: The backends `Settings.instance_backend` may name.
BACKENDS = ("process", "container", "ray")


def open_backend(settings: Settings) -> InstanceBackend:
    """The instance backend the settings name, configured from them: the one place a new
    backend is added. "process" and "container" give a routing backend over processes and
    containers: "process" runs modelhost's own images as processes and any other image in
    a container; "container" runs every instance in a container. "ray" places every
    instance on a Ray cluster (:mod:`.ray_backend`)."""
    if settings.instance_backend not in BACKENDS:
        raise ValueError(
            f"unknown instance backend {settings.instance_backend!r}; "
            f"available: {', '.join(BACKENDS)}"
        )
    if settings.instance_backend == "ray":
        return _ray_backend(settings)
    scope = scope_key(settings.data_dir)
    processes = ProcessBackend(
        settings.fork_server,
        settings.cgroups,
        settings.cpu_scale,
        scope,
        settings.data_dir,
        settings.instance_user,
        settings.instance_host,
        settings.requirements_timeout_s,
    )
    containers = ContainerBackend(
        settings.container_host,
        scope,
        settings.cpu_scale,
        settings.image_pull_timeout_s,
        settings.instance_host,
        settings.data_dir / "spares" if settings.container_spares else None,
    )
    return RoutingBackend(settings.instance_backend, processes, containers)


def _ray_backend(settings: Settings) -> InstanceBackend:
    """Nodes read model data from the server's S3 with the server's credentials; a server
    whose objects live on its own disk has no store the nodes can reach."""
    import botocore.session

    from modelhost.instances.ray_backend import RayBackend, StoreAccess
    from modelhost.storage import open_objects

    objects = open_objects(settings)
    store = None
    if objects.uses_s3:
        credentials = {}
        if (found := botocore.session.Session().get_credentials()) is not None:
            frozen = found.get_frozen_credentials()
            credentials = {
                "AWS_ACCESS_KEY_ID": frozen.access_key,
                "AWS_SECRET_ACCESS_KEY": frozen.secret_key,
            }
            if frozen.token:
                credentials["AWS_SESSION_TOKEN"] = frozen.token
        region = botocore.session.Session().get_config_variable("region")
        if region:
            credentials["AWS_DEFAULT_REGION"] = region
        store = StoreAccess(getattr(objects, "s3_endpoint_url", None), True, credentials)
    return RayBackend(
        settings.ray_address,
        store,
        settings.cpu_scale,
        settings.cgroups,
        settings.max_model_bytes,
    )


__all__ = [
    "BACKENDS",
    "ContainerBackend",
    "ContainerInstance",
    "ContainerSpec",
    "Instance",
    "InstanceBackend",
    "InstanceClient",
    "InstanceSpec",
    "InstanceUnreachable",
    "Pipeline",
    "PipelineInstance",
    "ProcessBackend",
    "ResourceUsage",
    "Response",
    "RoutingBackend",
    "grant_token",
    "open_backend",
    "revoke_token",
    "token_header",
]
