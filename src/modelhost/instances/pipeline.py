"""An instance of a multi-container model: one model server per container (a process,
or a container of its own), started, health-checked and ended together. The instance
type's CPU and memory are the instance's, not each container's: processes share one
control group sized to the type; containers each get an even share of it.

The instance is ready when every container answers /ping, and gone when any container
is: a pipeline with a dead stage cannot answer, so the whole instance is replaced. The
router reads `pipeline` (each container's hostname and address, in pipeline order, and
the execution mode) to chain a serial pipeline's hops or pick a Direct container.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass

from modelhost.instances.base import ContainerSpec, Instance, InstanceSpec, ResourceUsage
from modelhost.instances.cgroups import Group


def member_spec(spec: InstanceSpec, container: ContainerSpec) -> InstanceSpec:
    """The spec one container of a multi-container instance runs with: its own id (for
    its home, group or container name), artifacts, handlers, environment, image and log,
    `<variant>-<n>.<hostname>.log` beside the instance's."""
    log = spec.log_path
    return dataclasses.replace(
        spec,
        instance_id=f"{spec.instance_id}-{container.hostname}",
        model_dir=container.model_dir,
        framework=container.framework,
        environment=container.environment,
        image=container.image,
        log_path=None if log is None else log.with_name(f"{log.stem}.{container.hostname}.log"),
        containers=(),
    )


async def end_all(members: list[tuple[str, Instance]]) -> None:
    """Kill what a failed start had started."""
    await asyncio.gather(*(m.kill() for _, m in members), return_exceptions=True)


@dataclass(frozen=True)
class Pipeline:
    """What the router needs to invoke a multi-container instance."""

    mode: str  # "Serial" | "Direct"
    hops: tuple[tuple[str, tuple[str, int]], ...]  # (hostname, address), in order

    def address_of(self, hostname: str) -> tuple[str, int] | None:
        for name, address in self.hops:
            if name == hostname:
                return address
        return None

    @property
    def hostnames(self) -> list[str]:
        return [name for name, _ in self.hops]


class PipelineInstance:
    def __init__(
        self, spec: InstanceSpec, members: list[tuple[str, Instance]], group: Group | None
    ) -> None:
        self.spec = spec
        self.members = members
        self.group = group
        self._ending: asyncio.Task[None] | None = None
        self._dead: tuple[str, Instance] | None = None
        self.pipeline = Pipeline(
            spec.execution_mode, tuple((name, m.address) for name, m in members)
        )

    @property
    def address(self) -> tuple[str, int]:
        """The first container's, the pipeline's entry (the router's health pings go to
        every container's)."""
        return self.members[0][1].address

    @property
    def pid(self) -> int | None:
        return self.members[0][1].pid

    def usage(self) -> ResourceUsage | None:
        """The first container's, as `pid` is (CPU and memory readings cover it only)."""
        return self.members[0][1].usage()

    def is_alive(self) -> bool:
        if self._ending is not None:
            return False
        dead = next((m for m in self.members if not m[1].is_alive()), None)
        if dead is None:
            return True
        # One stage gone ends the instance: the rest go now, as the leftovers of a dead
        # instance do, without waiting for a stop that never comes. The first one found
        # dead is the one the failure detail names, whatever the kill does to the rest.
        self._dead = dead
        with contextlib.suppress(RuntimeError):  # no loop: whoever stops it ends them
            self._ending = asyncio.get_running_loop().create_task(self.kill())
        return False

    def failure_detail(self) -> str:
        dead = self._dead or next((m for m in self.members if not m[1].is_alive()), None)
        if dead is None:
            return "all containers of the instance are running"
        return f"container {dead[0]}: {dead[1].failure_detail()}"

    async def wait_ready(self, timeout_s: float) -> None:
        results = await asyncio.gather(
            *(member.wait_ready(timeout_s) for _, member in self.members),
            return_exceptions=True,
        )
        for (name, _), result in zip(self.members, results, strict=True):
            if isinstance(result, BaseException):
                await self.stop()
                if not isinstance(result, Exception):
                    raise result
                raise RuntimeError(f"container {name} failed to start: {result}") from result

    async def stop(self) -> None:
        try:
            await asyncio.gather(*(member.stop() for _, member in self.members))
        finally:
            await self._remove_group()

    async def kill(self) -> None:
        try:
            await asyncio.gather(*(member.kill() for _, member in self.members))
        finally:
            await self._remove_group()

    async def _remove_group(self) -> None:
        # The kernel may hold a group for a moment after its last process exits.
        for _ in range(20):
            if self._release_group():
                break
            await asyncio.sleep(0.05)

    def _release_group(self) -> bool:
        """Remove the instance's group once its processes are gone; True when none is left."""
        if self.group is not None and self.group.remove():
            self.group = None
        return self.group is None
