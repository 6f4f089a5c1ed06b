"""The `ray` backend: each instance is a Ray actor that owns one model server process.

When one machine is not enough, a Ray cluster (a local one, `ray start` nodes, KubeRay on
Kubernetes) places instances instead of a scheduler of our own. The actor
(:class:`InstanceHost`) runs on whichever node Ray picks; there it downloads the model's
`s3://` data and unpacks it with the same safe unpacking the server uses
(:func:`~modelhost.storage.prepare_model_dir`), then starts the model server through the
process backend (:class:`~modelhost.instances.process.ProcessBackend`, same launch file,
environment and token contract), listening on the node's address. The server's router
reaches it there directly over its own keep-alive connections, with the instance's token;
Ray carries no request.

Scheduling asks Ray for what the instance type has: `num_cpus` = vCPUs x MODELHOST_CPU_SCALE
(a fraction lets a small test cluster hold big types), `memory` = the type's memory, and
for GPU types `num_gpus` plus one unit of a custom resource named after the family
(`ml.g5` for `ml.g5.xlarge`), so a GPU type lands only on nodes started with
`--resources '{"ml.g5": N}'`. Every instance is placed with the SPREAD strategy, so a
variant's instances go to different nodes where they can. Not through a placement group:
its bundles are fixed when it is made and a variant's count is not (autoscaling,
replacements, scaling to zero), so a group per variant would be remade, moving running
instances, on each change, for the same best-effort spread.

An actor Ray cannot place yet (no node has the resources free) leaves the instance
pending: DescribeEndpoint shows what it waits for, the endpoint does not fail while Ray's
autoscaler may add a node, and only the startup timeout ends the wait, naming the missing
resources. An actor whose node dies ends its instance (`is_alive` turns False), and the
endpoint's replacement path starts another one, which Ray places on a surviving node.

The model server has no process on the server's machine, so CPU and memory readings come
from the actor (psutil on its node), polled about once a second (:meth:`RayInstance.usage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from modelhost.instances.base import InstanceSpec, ResourceUsage
from modelhost.instances.client import grant_token, revoke_token
from modelhost.instances.readiness import wait_until_answering

logger = logging.getLogger(__name__)

# How often a running instance's actor is asked whether its model server still runs and
# what it uses; and how long a pending actor waits before DescribeEndpoint says so.
_POLL_S = 1.0
_PENDING_NOTICE_S = 2.0
_STOP_GRACE_S = 10.0


@dataclasses.dataclass(frozen=True)
class StoreAccess:
    """How an actor reaches the object store the server uses: the S3 endpoint (None with
    `real_s3`: AWS's own) and the server's credentials, set in the actor's process only
    (never in the runtime environment Ray's dashboard shows)."""

    endpoint_url: str | None
    real_s3: bool
    credentials: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where an actor's model server listens, and the token it answers to."""

    host: str
    port: int
    token: str
    node_id: str


def family_of(instance_type: str) -> str:
    """`ml.g5.xlarge` -> `ml.g5`: the custom resource GPU nodes advertise."""
    return instance_type.rsplit(".", 1)[0]


def resources_for(spec: InstanceSpec, cpu_scale: float) -> dict[str, Any]:
    """The Ray resources one instance of the spec's type asks for."""
    kind = spec.instance_type
    options: dict[str, Any] = {
        "num_cpus": kind.vcpu * cpu_scale,
        "memory": int(kind.memory_gib * 1024**3),
    }
    if kind.gpus:
        options["num_gpus"] = kind.gpus
        options["resources"] = {family_of(kind.name): 1}
    return options


def describe(resources: dict[str, Any]) -> str:
    parts = [f"CPU {resources['num_cpus']:g}", f"memory {resources['memory'] / 1024**3:g} GiB"]
    if "num_gpus" in resources:
        parts.append(f"GPU {resources['num_gpus']}")
    parts += [f"{name} {amount:g}" for name, amount in resources.get("resources", {}).items()]
    return ", ".join(parts)


def _fits(node: dict[str, Any], resources: dict[str, Any]) -> bool:
    total = node.get("Resources", {})
    wanted = {
        "CPU": resources["num_cpus"],
        "memory": resources["memory"],
        "GPU": resources.get("num_gpus", 0),
        **resources.get("resources", {}),
    }
    return all(total.get(name, 0) >= amount for name, amount in wanted.items() if amount)


class InstanceHost:
    """The actor: one model server on the node Ray placed it on (made a Ray actor class by
    :class:`RayBackend`, so this module imports without Ray)."""

    def __init__(self, store: StoreAccess, cgroups: str, cpu_scale: float) -> None:
        # Only this actor's own process: each actor is a worker process of its own.
        os.environ.update(store.credentials)
        self._store = store
        self._cgroups = cgroups
        self._cpu_scale = cpu_scale
        self._root = Path(tempfile.mkdtemp(prefix="modelhost-ray-"))
        self._instance: Any = None

    async def start(self, spec: InstanceSpec, max_model_bytes: int) -> Placement:
        import ray

        from modelhost.instances.process import ProcessBackend, ProcessInstance
        from modelhost.storage import prepare_model_dir
        from modelhost.storage.objects import FsspecObjectStore

        host = ray.util.get_node_ip_address()
        model_dir = self._root / "models" / "model"
        if spec.model_data_url:
            objects = FsspecObjectStore(
                self._root / "objects",
                self._store.endpoint_url,
                real_s3=self._store.real_s3,
            )
            await asyncio.to_thread(
                prepare_model_dir, objects, spec.model_data_url, model_dir, max_model_bytes
            )
        else:
            model_dir.mkdir(parents=True)
        backend = ProcessBackend(
            fork=False,
            cgroups=self._cgroups,
            cpu_scale=self._cpu_scale,
            scope=self._root.name,
            data_dir=self._root,
            host=host,
        )
        local = dataclasses.replace(
            spec, model_dir=model_dir, log_path=self._root / "instance.log", on_progress=None
        )
        instance = await backend.start(local)
        assert isinstance(instance, ProcessInstance)  # RayBackend.start refuses pipelines
        self._instance = instance
        node_id = ray.get_runtime_context().get_node_id()
        return Placement(host, instance.port, instance.token, node_id)

    async def wait_exit(self) -> str:
        """Return, with why, once the model server has exited."""
        while self._instance.is_alive():
            await asyncio.sleep(0.2)
        return str(self._instance.failure_detail())

    async def usage(self) -> tuple[float, int]:
        """CPU seconds and resident bytes of the model server and its workers."""
        if self._instance is None:
            return 0.0, 0
        cpu, rss = 0.0, 0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self._instance.pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    cpu += times.user + times.system
                    rss += process.memory_info().rss
        return cpu, rss

    async def stop(self, kill: bool) -> None:
        try:
            if self._instance is not None:
                await (self._instance.kill() if kill else self._instance.stop())
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


class RayInstance:
    def __init__(
        self,
        spec: InstanceSpec,
        handle: Any,
        starting: Any,
        resources: dict[str, Any],
        backend: RayBackend,
    ) -> None:
        self.spec = spec
        self._handle = handle
        self._starting = asyncio.ensure_future(starting)
        self._resources = resources
        self._backend = backend
        self._placement: Placement | None = None
        self._ended = False
        self._detail = ""
        self._monitor: asyncio.Task[None] | None = None
        self._usage: ResourceUsage | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._placement is None:
            return ("0.0.0.0", 0)  # not placed yet: nothing routes to it before it is ready
        return (self._placement.host, self._placement.port)

    @property
    def pid(self) -> int | None:
        return None

    @property
    def node_id(self) -> str | None:
        return None if self._placement is None else self._placement.node_id

    def usage(self) -> ResourceUsage | None:
        return self._usage

    def is_alive(self) -> bool:
        return not self._ended

    def failure_detail(self) -> str:
        return self._detail or "the instance's Ray actor ended"

    async def wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            await self._placed(deadline, timeout_s)
        except BaseException:
            await self.kill()
            raise
        await wait_until_answering(self, max(deadline - loop.time(), 0.1), poll_s=0.02)

    async def _placed(self, deadline: float, timeout_s: float) -> None:
        import ray

        loop = asyncio.get_running_loop()
        noticed = False
        while True:
            wait = min(deadline - loop.time(), _PENDING_NOTICE_S)
            if wait <= 0:
                raise RuntimeError(
                    f"no Ray node had the resources for {self.spec.instance_type.name} "
                    f"({describe(self._resources)}) free within {timeout_s:g} s"
                    + await self._backend.shortfall(self._resources)
                )
            done, _ = await asyncio.wait({self._starting}, timeout=wait)
            if done:
                break
            if not noticed and self.spec.on_progress is not None:
                noticed = True
                self.spec.on_progress(
                    f"Waiting for a Ray node with {describe(self._resources)}"
                    + await self._backend.shortfall(self._resources)
                )
        try:
            self._placement = placement = self._starting.result()
        except ray.exceptions.RayTaskError as exc:
            raise RuntimeError(str(exc.cause if exc.cause is not None else exc)) from None
        except ray.exceptions.RayError as exc:
            raise RuntimeError(f"the instance's Ray actor failed: {exc}") from None
        grant_token(self.address, placement.token)
        self._monitor = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Until the model server or its actor ends: its usage, about once a second."""
        import ray

        exited = asyncio.ensure_future(self._handle.wait_exit.remote())
        try:
            while True:
                done, _ = await asyncio.wait({exited}, timeout=_POLL_S)
                if done:
                    try:
                        self._detail = exited.result()
                    except ray.exceptions.RayError as exc:
                        self._detail = f"the instance's Ray actor died: {_first_line(exc)}"
                    break
                with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
                    async with asyncio.timeout(_POLL_S):
                        cpu, rss = await self._handle.usage.remote()
                    self._usage = ResourceUsage(cpu, rss, time.monotonic())
        finally:
            exited.cancel()
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        if self._placement is not None:
            revoke_token(self.address, self._placement.token)

    async def stop(self) -> None:
        await self._shut(kill=False)

    async def kill(self) -> None:
        await self._shut(kill=True)

    async def _shut(self, kill: bool) -> None:
        import ray

        self._starting.cancel()
        if self._monitor is not None:
            self._monitor.cancel()
        self._end()
        if self._placement is not None:
            with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
                async with asyncio.timeout(_STOP_GRACE_S):
                    await self._handle.stop.remote(kill)
        await asyncio.to_thread(ray.kill, self._handle, no_restart=True)


def _first_line(exc: BaseException) -> str:
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


class RayBackend:
    """Instances on the Ray cluster at `address` ("auto", "local", "ray://host:port" or a
    GCS "host:port"). `store` says how nodes read model data; `cpu_scale` multiplies each
    type's vCPUs into the CPUs asked of Ray; `max_model_bytes` bounds each unpacking."""

    def __init__(
        self,
        address: str,
        store: StoreAccess | None,
        cpu_scale: float = 1.0,
        cgroups: str = "auto",
        max_model_bytes: int = 0,
    ) -> None:
        self.address = address
        self._store = store
        self._cpu_scale = cpu_scale
        self._cgroups = cgroups
        self._max_model_bytes = max_model_bytes
        self._actor_class: Any = None

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        ray.init(
            address=None if self.address == "local" else self.address,
            namespace="modelhost",
            log_to_driver=False,
            configure_logging=False,
        )
        logger.info("instances run on the Ray cluster at %s", self.address)

    async def warm(self) -> None:
        await asyncio.to_thread(self._connect)

    async def release(self, endpoint: str) -> None:
        """Nothing is kept for one endpoint."""

    async def close(self) -> None:
        import ray

        if ray.is_initialized():
            await asyncio.to_thread(ray.shutdown)

    async def shortfall(self, resources: dict[str, Any]) -> str:
        """Why Ray cannot place an actor: no node has the resources at all, or all that do
        are busy."""
        import ray

        nodes = await asyncio.to_thread(ray.nodes)
        alive = [node for node in nodes if node.get("Alive")]
        fitting = sum(1 for node in alive if _fits(node, resources))
        if not fitting:
            return (
                f"; none of the cluster's {len(alive)} node(s) has them "
                "(waiting for the cluster to add one)"
            )
        return f"; the {fitting} node(s) that have them are busy"

    async def start(self, spec: InstanceSpec) -> RayInstance:
        import ray

        await self.warm()
        if spec.containers:
            raise OSError(
                "the ray instance backend runs single-container models; a model with "
                "several Containers runs on the process or container backend"
            )
        if spec.model_data_url and self._store is None:
            raise OSError(
                "the ray instance backend reads model data from S3 on each node, and this "
                "server keeps objects on its own disk: configure an S3 endpoint "
                "(AWS_ENDPOINT_URL, or MODELHOST_S3=aws)"
            )
        if self._actor_class is None:
            self._actor_class = ray.remote(InstanceHost)
        resources = resources_for(spec, self._cpu_scale)
        handle = self._actor_class.options(
            **resources,
            scheduling_strategy="SPREAD",
            max_restarts=0,
            max_concurrency=16,
        ).remote(self._store or StoreAccess(None, False, {}), self._cgroups, self._cpu_scale)
        remote_spec = dataclasses.replace(spec, on_progress=None)
        starting = handle.start.remote(remote_spec, self._max_model_bytes)
        return RayInstance(spec, handle, starting, resources, self)
