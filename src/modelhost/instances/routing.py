"""The backend a server runs: each model's instances go to processes or containers by
what its image names, so a model in a team's own image runs in a container with no flag
while modelhost's own images keep running on the built-in model server."""

from __future__ import annotations

import dataclasses

from modelhost.instances import images
from modelhost.instances.base import Instance, InstanceSpec
from modelhost.instances.container import ContainerBackend
from modelhost.instances.process import ProcessBackend


class RoutingBackend:
    """`default` "process": a built-in image name (see `images.is_builtin`) runs as a
    process unless the engine holds such an image; any other image runs in a container.
    `default` "container": every instance runs in a container."""

    def __init__(
        self, default: str, processes: ProcessBackend, containers: ContainerBackend
    ) -> None:
        self.default = default
        self.processes = processes
        self.containers = containers

    async def warm(self) -> None:
        await self.processes.warm()
        await self.containers.warm()

    async def release(self, endpoint: str) -> None:
        await self.containers.release(endpoint)

    async def close(self) -> None:
        await self.containers.close()
        await self.processes.close()

    async def in_container(self, spec: InstanceSpec) -> bool:
        if self.default == "container":
            return True
        if not spec.image:
            return False
        if images.is_builtin(spec.image):
            return await self.containers.has_image(spec.image)
        return True

    async def start(self, spec: InstanceSpec) -> Instance:
        if spec.containers:
            return await self._start_pipeline(spec)
        if await self.in_container(spec):
            return await self.containers.start(spec)
        return await self.processes.start(spec)

    async def _start_pipeline(self, spec: InstanceSpec) -> Instance:
        """A multi-container model runs one way, every container a process or every one a
        container, so the instance's type bounds it as a whole; a pipeline that would mix
        the two is refused, naming a container of each kind."""
        where = {}
        for container in spec.containers:
            member = dataclasses.replace(spec, image=container.image, containers=())
            where[container.hostname] = await self.in_container(member)
        if not any(where.values()):
            return await self.processes.start(spec)
        if all(where.values()):
            return await self.containers.start_pipeline(spec)
        as_process = next(name for name, inside in where.items() if not inside)
        in_container = next(name for name, inside in where.items() if inside)
        raise ValueError(
            f"container {in_container} would run in a container and container {as_process} "
            "as a process; the containers of a model run one way: build modelhost's images "
            "(`modelhost images build`) so they run in containers too, or run the server "
            "with --instance-backend container"
        )
