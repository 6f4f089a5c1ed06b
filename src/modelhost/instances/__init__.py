"""Instance backends: where a model server runs.

Every backend starts one model server per (variant, replica) that honours the SageMaker
container contract (GET /ping, POST /invocations on a port). The rest of modelhost only
sees `Instance` and `InstanceSpec`, so a process, a container or a Ray actor look alike.
"""

from __future__ import annotations

from pathlib import Path

from modelhost.instances.base import Instance, InstanceBackend, InstanceSpec
from modelhost.instances.client import (
    InstanceClient,
    InstanceUnreachable,
    Response,
    token_header,
)
from modelhost.instances.process import ProcessBackend


def get_backend(name: str, fork_server: bool = True, cgroups: str = "auto",
                cpu_scale: float = 1.0, scope: str = "default", data_dir: Path | None = None,
                instance_user: str = "") -> InstanceBackend:
    if name == "process":
        return ProcessBackend(fork_server, cgroups, cpu_scale, scope, data_dir, instance_user)
    raise ValueError(f"unknown instance backend {name!r}; available: process")


__all__ = [
    "Instance",
    "InstanceBackend",
    "InstanceClient",
    "InstanceSpec",
    "InstanceUnreachable",
    "ProcessBackend",
    "Response",
    "get_backend",
    "token_header",
]
