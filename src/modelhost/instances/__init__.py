"""Instance backends: where a model server runs.

Every backend starts one model server per (variant, replica) that honours the SageMaker
container contract (GET /ping, POST /invocations on a port). The rest of modelhost only
sees `Instance` and `InstanceSpec`, so a process, a container or a Ray actor look alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelhost.instances.base import Instance, InstanceBackend, InstanceSpec
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
from modelhost.instances.process import ProcessBackend
from modelhost.instances.routing import RoutingBackend

if TYPE_CHECKING:
    from modelhost.config import Settings

#: The backends `Settings.instance_backend` may name.
BACKENDS = ("process", "container")


def open_backend(settings: Settings) -> InstanceBackend:
    """The instance backend the settings name, configured from them: the one place a new
    backend (Ray) is added. Both names give a routing backend over processes and
    containers: "process" runs modelhost's own images as processes and any other image in
    a container; "container" runs every instance in a container."""
    if settings.instance_backend not in BACKENDS:
        raise ValueError(
            f"unknown instance backend {settings.instance_backend!r}; "
            f"available: {', '.join(BACKENDS)}"
        )
    scope = scope_key(settings.data_dir)
    processes = ProcessBackend(
        settings.fork_server,
        settings.cgroups,
        settings.cpu_scale,
        scope,
        settings.data_dir,
        settings.instance_user,
        settings.instance_host,
    )
    containers = ContainerBackend(
        settings.container_host,
        scope,
        settings.cpu_scale,
        settings.image_pull_timeout_s,
        settings.instance_host,
    )
    return RoutingBackend(settings.instance_backend, processes, containers)


__all__ = [
    "BACKENDS",
    "ContainerBackend",
    "ContainerInstance",
    "Instance",
    "InstanceBackend",
    "InstanceClient",
    "InstanceSpec",
    "InstanceUnreachable",
    "ProcessBackend",
    "Response",
    "RoutingBackend",
    "grant_token",
    "open_backend",
    "revoke_token",
    "token_header",
]
