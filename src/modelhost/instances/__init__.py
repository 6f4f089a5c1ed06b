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
    token_header,
)
from modelhost.instances.process import ProcessBackend

if TYPE_CHECKING:
    from modelhost.config import Settings

#: The backends `Settings.instance_backend` may name.
BACKENDS = ("process",)


def open_backend(settings: Settings) -> InstanceBackend:
    """The instance backend the settings name, configured from them: the one place a new
    backend (containers, Ray) is added."""
    if settings.instance_backend == "process":
        return ProcessBackend(settings.fork_server, settings.cgroups, settings.cpu_scale,
                              scope_key(settings.data_dir), settings.data_dir,
                              settings.instance_user)
    raise ValueError(f"unknown instance backend {settings.instance_backend!r}; available: "
                     f"{', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "Instance",
    "InstanceBackend",
    "InstanceClient",
    "InstanceSpec",
    "InstanceUnreachable",
    "ProcessBackend",
    "Response",
    "open_backend",
    "token_header",
]
