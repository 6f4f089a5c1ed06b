"""The `container` backend: each instance is an OCI container run the way SageMaker runs
an inference image.

The image gets `serve` as its argument, the model's unpacked artifacts read-only at
`/opt/ml/model`, the model's `Environment` plus SageMaker's variables, and answers
`/ping` and `/invocations` on port 8080, published on 127.0.0.1 only (or the address
the operator names, see Settings.instance_host), where the router reaches it like any
instance. The instance type holds through the engine: a CPU quota
(`nano_cpus`, the cores the process backend would give) and a memory limit.

The engine is driven through the `docker` SDK, which speaks to Docker Engine and to
podman's Docker-compatible service alike. Its calls block, so every one runs in a thread:
the server's event loop never waits on the engine. Each container has a watcher thread
that copies its output into the instance's log file and notes when it exits, so
`is_alive` (asked on every health check) is an attribute read.

Containers do not die with the server as instance processes do, so each carries the data
dir's scope as a label: stopping an instance removes its container, closing the backend
removes any left, and the first connection to the engine (made under the data dir's lock)
removes whatever a server killed earlier left behind. They are removed rather than
adopted: what makes a container an instance (the token the router sends it, the watcher
that copies its output and notices its exit, its GPUs) lived in the killed server, and a
new one starts in about half a second.

An image not present is pulled with its progress reported (:mod:`.pulls`); a GPU type
takes GPUs of its own (:mod:`.gpus`); a container killed for its memory says so
(:mod:`.oom`); a serverless cold start of modelhost's own image takes a spare container
that has its imports done (:mod:`.spares`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelhost.instances import cgroups, images
from modelhost.instances.base import Instance, InstanceSpec, ResourceUsage
from modelhost.instances.client import grant_token, revoke_token
from modelhost.instances.forkserver import THREAD_VARIABLES
from modelhost.instances.gpus import GpuPool
from modelhost.instances.local import free_port, log_tail
from modelhost.instances.oom import kernel_oom_killed
from modelhost.instances.pipeline import PipelineInstance, end_all, member_spec
from modelhost.instances.pulls import PullProgress
from modelhost.instances.readiness import wait_until_answering
from modelhost.instances.spares import (
    CONTROL_MOUNT,
    SPARE_LABEL,
    Spare,
    SparePool,
    make_folder,
    remove_folder,
    usable_for,
)

logger = logging.getLogger(__name__)

#: The label every container of this server carries: the data dir's scope.
SCOPE_LABEL = "modelhost.scope"
INSTANCE_LABEL = "modelhost.instance"
#: Where SageMaker mounts the model and what it listens on, inside the container.
MODEL_MOUNT = "/opt/ml/model"
CONTAINER_PORT = 8080
#: Seconds a container gets after SIGTERM before it is killed (the process backend's).
STOP_GRACE_S = 5
#: Engine sockets tried, in order, when none is configured.
#: Seconds to wait for the engine to answer a ping, and any other call (a pull, a stop).
CONNECT_TIMEOUT_S = 5
CALL_TIMEOUT_S = 120
#: How long a failed connection is taken as the answer for built-in images' lookups.
RETRY_S = 30
#: How long an image found locally is taken as still there without asking the engine:
#: every start asks (once to pick the backend, once to run it), and each question is a
#: round trip to the engine on a cold start's path. A run that finds it gone asks again.
IMAGE_CACHE_S = 30.0
#: The longest a pull may take (MODELHOST_IMAGE_PULL_TIMEOUT): a registry that stalls
#: must fail the endpoint, not keep it Creating and hold a thread forever.
DEFAULT_PULL_TIMEOUT_S = 1800.0
DEFAULT_SOCKETS = ("/run/podman/podman.sock", "/var/run/docker.sock")

HOW_TO_GET_ONE = (
    "install podman and run `podman system service --time=0 unix:///run/podman/podman.sock` "
    "(or run Docker Engine), or point MODELHOST_CONTAINER_HOST at an engine's socket"
)


class EngineMissing(OSError):
    """No container engine answers; the message says how to get one."""


def engine_urls(configured: str) -> list[str]:
    """The engine addresses to try: the configured one, else the usual sockets that exist."""
    if configured:
        return [configured]
    return [f"unix://{path}" for path in DEFAULT_SOCKETS if Path(path).exists()]


class _Engine:
    """One connection to the engine, made on first use (the engine may start after the
    server); the first one removes this scope's leftovers. Its methods block."""

    def __init__(
        self, configured: str, scope: str, pull_timeout_s: float = DEFAULT_PULL_TIMEOUT_S
    ) -> None:
        self.configured = configured
        self.scope = scope
        self.pull_timeout_s = pull_timeout_s
        self._lock = threading.Lock()
        self._client: Any = None
        self._streams: Any = None  # without a read timeout: log streams stay quiet for long
        self.url = ""
        self._failed: tuple[float, EngineMissing] | None = None
        #: image as named → (local name, when found), see IMAGE_CACHE_S.
        self._found: dict[str, tuple[str, float]] = {}

    def client(self, recent_failure_ok: bool = False) -> Any:
        """The connected client; `recent_failure_ok` repeats a failure of the last
        `RETRY_S` seconds instead of trying again (for questions asked on every start of
        a built-in image, which must not wait on an engine that is not there)."""
        with self._lock:
            if self._client is None:
                if (
                    recent_failure_ok
                    and self._failed is not None
                    and time.monotonic() < self._failed[0] + RETRY_S
                ):
                    raise self._failed[1]
                try:
                    self._connect()
                except EngineMissing as exc:
                    self._failed = (time.monotonic(), exc)
                    raise
                self._failed = None
            return self._client

    def streams(self) -> Any:
        self.client()
        return self._streams

    def _connect(self) -> None:
        urls = engine_urls(self.configured)
        if not urls:
            raise EngineMissing(
                "no container engine configured and no socket at "
                f"{', '.join(DEFAULT_SOCKETS)}: {HOW_TO_GET_ONE}"
            )
        try:  # the `container` extra; imported only when containers are used
            from docker.client import DockerClient
        except ImportError as exc:
            raise EngineMissing(
                "container instances need the Docker Engine API client: "
                "pip install 'modelhost[container]'"
            ) from exc
        errors = []
        for url in urls:
            try:
                client = DockerClient(base_url=url, timeout=CONNECT_TIMEOUT_S)
                client.ping()
                client.api.timeout = CALL_TIMEOUT_S  # a pull or a stop takes a while
            except Exception as exc:  # the SDK raises requests' and its own errors
                errors.append(f"{url}: {exc}")
                continue
            self._client, self.url = client, url
            self._streams = DockerClient(base_url=url, timeout=None)
            self.remove_leftovers()
            return
        raise EngineMissing(
            f"no container engine reachable ({'; '.join(errors)}): {HOW_TO_GET_ONE}"
        )

    def containers(self) -> list[Any]:
        found: list[Any] = self._client.containers.list(
            all=True, filters={"label": f"{SCOPE_LABEL}={self.scope}"}
        )
        return found

    def remove_leftovers(self) -> None:
        for container in self.containers():
            logger.warning("removing container %s left by an earlier run", container.name)
            with contextlib.suppress(Exception):
                container.remove(force=True)

    def close(self) -> None:
        with self._lock:
            if self._client is None:
                return
            with contextlib.suppress(Exception):
                self.remove_leftovers()
            self._client.close()
            self._streams.close()
            self._client = self._streams = None

    def find_image(self, image: str, recent_failure_ok: bool = False) -> str | None:
        """The local name the image is found under, or None; one found in the last
        `IMAGE_CACHE_S` seconds is answered without asking the engine."""
        from docker.errors import ImageNotFound

        client = self.client(recent_failure_ok)
        cached = self._found.get(image)
        if cached is not None and time.monotonic() < cached[1] + IMAGE_CACHE_S:
            return cached[0]
        for name in images.candidates(image):
            try:
                client.images.get(name)
            except ImageNotFound:
                continue
            self._found[image] = (name, time.monotonic())
            return name
        self._found.pop(image, None)
        return None

    def forget_image(self, image: str) -> None:
        """The engine no longer has what the cache says it found."""
        self._found.pop(image, None)

    def resolve(self, image: str, report: Callable[[str], None] | None = None) -> str:
        """A local name for the image, pulling it when none is present; `report` gets
        the pull's progress lines."""
        if (name := self.find_image(image)) is not None:
            return name
        logger.info("pulling image %s", image)
        pull = PullProgress(image, report)
        pull.begin()
        self._pull(image, pull)
        if self.find_image(image) is None:
            raise images.ImageMissing(image, "the engine reported no image after the pull")
        logger.info("pulled image %s in %.1f s", image, time.monotonic() - pull.started)
        return image

    def _pull(self, image: str, pull: PullProgress) -> None:
        """Pull through a client of its own, cut off after `pull_timeout_s`: the SDK
        reads a pull's stream with no timeout, so a watchdog shuts the stream's socket
        down at the deadline (which ends the blocked read) and the pull fails naming the
        image and the limit."""
        from docker.api.client import APIClient

        self.client()  # connected: self.url is the engine's
        timed_out = threading.Event()
        streams: list[Any] = []
        lock = threading.Lock()

        def cut() -> None:
            with lock:
                timed_out.set()
                for response in streams:
                    _shut_down(response)

        def keep(response: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                streams.append(response)
                if timed_out.is_set():
                    _shut_down(response)
            return response

        api = APIClient(base_url=self.url, timeout=CALL_TIMEOUT_S)
        api.hooks["response"].append(keep)
        watchdog = threading.Timer(self.pull_timeout_s, cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            for event in api.pull(image, stream=True, decode=True):
                if timed_out.is_set():
                    break
                pull.note(event)
        except images.ImageMissing:
            raise
        except Exception as exc:
            if not timed_out.is_set():
                raise images.ImageMissing(image, str(exc).strip()) from exc
        finally:
            watchdog.cancel()
            api.close()
        if timed_out.is_set():
            raise images.ImageMissing(
                image,
                f"the pull did not finish within {self.pull_timeout_s:g} seconds "
                "(MODELHOST_IMAGE_PULL_TIMEOUT)",
            )

    def is_podman(self) -> bool:
        """Whether the engine is podman (which takes GPUs as CDI devices) rather than
        Docker Engine (which takes them as device requests)."""
        components = self.client().version().get("Components") or []
        return any("podman" in str(c.get("Name", "")).lower() for c in components)


class ContainerInstance:
    #: Where the container sees the model dir: a multi-model endpoint's models unpacked
    #: into it are loaded from `<model_mount>/<name>` (see modelhost.router.multimodel).
    model_mount = MODEL_MOUNT

    def __init__(
        self,
        spec: InstanceSpec,
        engine: _Engine,
        container: Any,
        host: str,
        port: int,
        token: str,
        gpus: GpuPool,
        spare: Spare | None = None,
    ) -> None:
        self.spec = spec
        self._gpus = gpus
        #: The spare this instance was started from (its folders go with it), if any.
        self.spare = spare
        #: Called once the instance answers (the backend starts the next spare then).
        self.on_ready: Callable[[], None] | None = None
        self.host = host
        self.port = port
        self.token = token
        self._engine = engine
        self._container = container
        self._pid: int | None = None
        self._exit_code: int | None = None
        self._out_of_memory = False
        self._exited = threading.Event()
        self._stopping = False
        self._watcher = threading.Thread(
            target=self._watch, daemon=True, name=f"container-{spec.instance_id}"
        )
        self._watcher.start()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def container_id(self) -> str:
        return str(self._container.id)

    def usage(self) -> ResourceUsage | None:
        return None  # read through `pid`

    def is_alive(self) -> bool:
        return not self._exited.is_set()

    def failure_detail(self) -> str:
        tail = log_tail(self.spec.log_path)
        return self._exit_line() + (f": {tail}" if tail else "")

    def _exit_line(self) -> str:
        line = f"container exited with code {self._exit_code}"
        if self._out_of_memory:
            limit = int(self.spec.instance_type.memory_gib * 1024)
            line += (
                f", killed for exceeding its memory limit of {limit} MiB "
                f"({self.spec.instance_type.name})"
            )
        return line

    def _watch(self) -> None:
        """Copy the container's output into its log file until it ends, then note the
        exit code and remove the container (a dead instance is replaced, not stopped)."""
        try:
            stream = self._engine.streams().containers.get(self.container_id)
            self._pid = int(stream.attrs.get("State", {}).get("Pid") or 0) or None
            path = self.spec.log_path
            with path.open("ab") if path is not None else open("/dev/null", "wb") as log:
                for chunk in stream.logs(stream=True, follow=True):
                    log.write(chunk)
                    log.flush()
                self._exit_code = int(stream.wait().get("StatusCode", -1))
                with contextlib.suppress(Exception):
                    stream.reload()
                    self._out_of_memory = bool(stream.attrs["State"].get("OOMKilled"))
                if self._exit_code == 137 and not self._out_of_memory and not self._stopping:
                    self._out_of_memory = kernel_oom_killed(self.container_id)
                if not self._stopping:  # the instance log says why it ended
                    log.write(f"[modelhost] {self._exit_line()}\n".encode())
        except Exception as exc:
            if not self._stopping:  # a stop may remove the container before the wait
                logger.warning("instance %s: lost its container: %s", self.spec.instance_id, exc)
        finally:
            self._exited.set()
            revoke_token(self.address, self.token)
            if not self._stopping:
                logger.warning("instance %s: %s", self.spec.instance_id, self._exit_line())
            self._remove()
            self._gpus.give_back(self.spec.instance_id)

    def _remove(self) -> None:
        with contextlib.suppress(Exception):
            self._container.remove(force=True)
        if self.spare is not None:
            remove_folder(self.spare.folder)

    async def wait_ready(self, timeout_s: float) -> None:
        await wait_until_answering(self, timeout_s, poll_s=0.02, what="container")
        if self.spare is not None:
            self.spare.forget_assignment()
        if self.on_ready is not None:
            self.on_ready()

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.to_thread(self._stop_blocking, False)

    async def kill(self) -> None:
        self._stopping = True
        await asyncio.to_thread(self._stop_blocking, True)

    def _stop_blocking(self, kill: bool) -> None:
        if not self._exited.is_set():
            with contextlib.suppress(Exception):
                if kill:
                    self._container.kill()
                else:
                    self._container.stop(timeout=STOP_GRACE_S)
        # The watcher reads the output to its end and removes the container; whatever
        # it could not, goes now.
        self._watcher.join(timeout=STOP_GRACE_S + 5)
        self._remove()


class ContainerBackend:
    """Runs instances as containers on the engine at `engine_url` ("": the usual sockets);
    `scope` labels this server's containers, `cpu_scale` is the process backend's, and
    a pull taking longer than `pull_timeout_s` fails the instance; ports are published
    on `host` (see Settings.instance_host)."""

    def __init__(
        self,
        engine_url: str = "",
        scope: str = "default",
        cpu_scale: float = 1.0,
        pull_timeout_s: float = DEFAULT_PULL_TIMEOUT_S,
        host: str = "127.0.0.1",
        spare_dir: Path | None = None,
    ) -> None:
        self._engine = _Engine(engine_url, scope, pull_timeout_s)
        self._cpu_scale = cpu_scale
        self._host = host
        self._gpus = GpuPool()
        #: Where spares' folders go (None: no spares, see :mod:`.spares`).
        self._spare_dir = spare_dir
        self._spares = SparePool()
        self._spare_images: dict[str, bool] = {}
        self._making: list[threading.Thread] = []

    async def warm(self) -> None:
        """Connect and clear leftovers now if an engine is there; a missing one is only
        an error for a model that needs it. Spares' folders an earlier run left go too
        (their containers went with the connection's leftovers)."""
        if self._spare_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._spare_dir, True)
        try:
            await asyncio.to_thread(self._engine.client)
        except EngineMissing as exc:
            logger.info("container instances unavailable: %s", exc)
        else:
            logger.info("container engine at %s", self._engine.url)

    async def close(self) -> None:
        await asyncio.to_thread(self._close_blocking)

    def _close_blocking(self) -> None:
        for spare in self._spares.close():
            self._discard(spare)
        for thread in list(self._making):
            thread.join(timeout=CONNECT_TIMEOUT_S)
        self._engine.close()

    async def release(self, endpoint: str) -> None:
        """The endpoint is deleted: remove the spares no remaining endpoint uses."""
        for spare in self._spares.release(endpoint):
            await asyncio.to_thread(self._discard, spare)

    def configured(self) -> bool:
        """Whether an engine may be there at all (one is configured or a usual socket
        exists): without one, built-in images start with no engine call."""
        return bool(engine_urls(self._engine.configured))

    async def has_image(self, image: str) -> bool:
        """Whether an engine is reachable and holds the image locally (never pulls)."""
        if not self.configured():
            return False
        try:
            found = await asyncio.to_thread(self._engine.find_image, image, True)
        except EngineMissing:
            return False
        return found is not None

    async def start(self, spec: InstanceSpec, share: int = 1) -> ContainerInstance:
        """`share`: the instance type's CPU and memory are split this many ways (one
        container of a multi-container instance of that many)."""
        if not spec.image:
            raise ValueError(f"instance {spec.instance_id} names no image")
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        return await asyncio.to_thread(self._start_blocking, spec, share)

    async def start_pipeline(self, spec: InstanceSpec) -> PipelineInstance:
        """A container per container of a multi-container model, each with an even share
        of the instance type's CPU and memory, so the instance holds no more than its
        type. GPU types are refused: their devices cannot be shared out that way."""
        if spec.instance_type.gpus:
            raise ValueError(
                f"multi-container models run in containers on CPU instance types only; "
                f"{spec.instance_type.name} has GPUs"
            )
        members: list[tuple[str, Instance]] = []
        try:
            for container in spec.containers:
                instance = await self.start(member_spec(spec, container), len(spec.containers))
                members.append((container.hostname, instance))
        except BaseException:
            await end_all(members)
            raise
        return PipelineInstance(spec, members, None)

    def _start_blocking(self, spec: InstanceSpec, share: int) -> ContainerInstance:
        key = self._spare_key(spec) if share == 1 else None
        if key is not None:
            self._spares.use(key, spec.endpoint)
            spare = self._spares.take(key)
            if spare is not None:
                try:
                    instance = self._assign(spare, spec)
                except Exception as exc:
                    logger.warning("spare %s unusable: %s", spare.container.short_id, exc)
                    self._discard(spare)
                else:
                    instance.on_ready = lambda: self._replenish(spec, key)
                    return instance
        gpus = self._gpus.take(spec.instance_id, spec.instance_type)
        try:
            instance = self._run(spec, gpus, share)
        except BaseException:
            self._gpus.give_back(spec.instance_id)
            raise
        if key is not None:
            instance.on_ready = lambda: self._replenish(spec, key)
        return instance

    def _spare_key(self, spec: InstanceSpec) -> tuple[str, str] | None:
        """The key of the spares an instance of `spec` may start from, or None: spares
        are on, the spec is one a spare can take, and its image is present and labelled
        as modelhost's own (see :mod:`.spares`)."""
        if self._spare_dir is None or not spec.image or not usable_for(spec):
            return None
        name = self._engine.find_image(spec.image)
        if name is None:
            return None
        if name not in self._spare_images:
            labels = self._engine.client().images.get(name).labels or {}
            self._spare_images[name] = labels.get(SPARE_LABEL) == "1"
        return (name, spec.instance_type.name) if self._spare_images[name] else None

    def _assign(self, spare: Spare, spec: InstanceSpec) -> ContainerInstance:
        """Make the spare the instance of `spec`: its model, its environment, its token."""
        token = secrets.token_urlsafe(32)
        spare.assign(spec.model_dir, spec.instance_id, {**spec.environment, **_contract(token)})
        grant_token((self._host, spare.port), token)
        logger.info(
            "instance %s: spare container %s on port %d",
            spec.instance_id,
            spare.container.short_id,
            spare.port,
        )
        return ContainerInstance(
            spec, self._engine, spare.container, self._host, spare.port, token, self._gpus, spare
        )

    def _replenish(self, spec: InstanceSpec, key: tuple[str, str]) -> None:
        """Start the next spare of `key` in a thread of its own, unless one waits or
        is on its way (called once an instance of that key answers, so a spare's imports
        do not compete with the cold start they follow)."""
        if not self._spares.begin_making(key):
            return
        thread = threading.Thread(
            target=self._make_spare, args=(spec, key), daemon=True, name="spare"
        )
        self._making = [t for t in self._making if t.is_alive()] + [thread]
        thread.start()

    def _make_spare(self, spec: InstanceSpec, key: tuple[str, str]) -> None:
        assert self._spare_dir is not None
        spare = None
        folder = None
        try:
            kind = spec.instance_type
            cores, threads = self._cores(kind, 1)
            port = free_port(self._host)
            name = f"modelhost-{self._engine.scope}-spare-{secrets.token_hex(4)}"
            folder = make_folder(self._spare_dir, name)
            arguments: dict[str, Any] = {
                "command": ["serve"],
                "name": name,
                "labels": {
                    SCOPE_LABEL: self._engine.scope,
                    INSTANCE_LABEL: "spare",
                    SPARE_LABEL: kind.name,
                },
                "environment": {
                    **dict.fromkeys(THREAD_VARIABLES, threads),
                    "SAGEMAKER_BIND_TO_PORT": str(CONTAINER_PORT),
                    "SM_MODEL_DIR": MODEL_MOUNT,
                    "MODELHOST_SPARE_DIR": CONTROL_MOUNT,
                },
                "ports": {f"{CONTAINER_PORT}/tcp": (self._host, port)},
                "volumes": {
                    str(folder / "model"): {"bind": MODEL_MOUNT, "mode": "ro"},
                    str(folder / "control"): {"bind": CONTROL_MOUNT, "mode": "ro"},
                },
                "nano_cpus": int(cores * 1e9),
                "mem_limit": int(kind.memory_gib * 1024**3),
            }
            container = self._create(key[0], key[0], arguments)
            spare = Spare(key, container, port, folder)
            container.start()
        except Exception as exc:
            logger.warning("could not start a spare container for %s: %s", key, exc)
            if spare is not None:
                self._discard(spare)
            elif folder is not None:
                remove_folder(folder)
            self._spares.made(key, None)
            return
        unwanted = self._spares.made(key, spare)
        if unwanted is not None:
            self._discard(unwanted)
            return
        logger.info("spare container %s for %s on %s", container.short_id, key[0], key[1])
        self._watch_spare(spare)

    def _watch_spare(self, spare: Spare) -> None:
        """Wait (in the thread that made it) for the spare to end; one that ends while
        waiting is removed (the next instance of its key starts the usual way and makes
        a new spare)."""
        with contextlib.suppress(Exception):
            self._engine.streams().containers.get(spare.container.id).wait()
        if self._spares.lost(spare):
            logger.warning("spare container %s ended while waiting", spare.container.short_id)
            self._discard(spare)

    def _discard(self, spare: Spare) -> None:
        with contextlib.suppress(Exception):
            spare.container.remove(force=True)
        remove_folder(spare.folder)

    def _cores(self, kind: Any, share: int) -> tuple[float, str]:
        """The cores an instance of `kind` (one of `share` containers) gets, and the
        thread count its libraries are given."""
        cores = cgroups.cpu_cores(kind.vcpu, self._cpu_scale) / share
        return cores, str(max(1, math.ceil(cores - 1e-9)))

    def _pull_reporter(self, spec: InstanceSpec) -> Callable[[str], None]:
        """Where a pull's progress goes: the instance log, and whoever started it."""

        def report(line: str) -> None:
            if spec.log_path is not None:
                with spec.log_path.open("a") as log:
                    log.write(f"[modelhost] {line}\n")
            if spec.on_progress is not None:
                spec.on_progress(line)

        return report

    def _devices(self, gpus: list[int]) -> dict[str, Any]:
        """The run arguments that pass `gpus` through: CDI device names for podman,
        device requests (the NVIDIA Container Toolkit's) for Docker Engine."""
        if not gpus:
            return {}
        if self._engine.is_podman():
            return {"devices": [f"nvidia.com/gpu={index}" for index in gpus]}
        from docker.types import DeviceRequest

        ids = [str(index) for index in gpus]
        return {"device_requests": [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]}

    def _run(self, spec: InstanceSpec, gpus: list[int], share: int) -> ContainerInstance:
        name = self._engine.resolve(spec.image, self._pull_reporter(spec))
        kind = spec.instance_type
        cores, threads = self._cores(kind, share)
        token = secrets.token_urlsafe(32)
        port = free_port(self._host)
        environment = {
            **dict.fromkeys(THREAD_VARIABLES, threads),
            **spec.environment,
            **_contract(token),
        }
        grant_token((self._host, port), token)
        arguments: dict[str, Any] = {
            "command": ["serve"],
            "name": f"modelhost-{self._engine.scope}-{spec.instance_id}-{secrets.token_hex(3)}",
            "labels": {SCOPE_LABEL: self._engine.scope, INSTANCE_LABEL: spec.instance_id},
            "environment": environment,
            "ports": {f"{CONTAINER_PORT}/tcp": (self._host, port)},
            "volumes": {str(spec.model_dir): {"bind": MODEL_MOUNT, "mode": "ro"}},
            "nano_cpus": int(cores * 1e9),
            "mem_limit": int(kind.memory_gib * 1024**3 / share),
            **self._devices(gpus),
        }
        container = None
        try:
            container = self._create(spec.image, name, arguments)
            container.start()
        except Exception as exc:
            revoke_token((self._host, port), token)
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            if isinstance(exc, OSError):
                raise
            raise OSError(f"the engine refused to run {name}: {exc}") from exc
        logger.info(
            "instance %s: container %s of %s on port %d",
            spec.instance_id,
            container.short_id,
            name,
            port,
        )
        # Its pid comes with the watcher's first look at it, off the start's path.
        return ContainerInstance(spec, self._engine, container, self._host, port, token, self._gpus)

    def _create(self, image: str, name: str, arguments: dict[str, Any]) -> Any:
        """Create (not start) the container of `name`, the local name `image` was found
        under. Created and started in two calls rather than by the SDK's `run`, which
        pulls an image it does not find, with no bound and no progress: an image removed
        since it was last found is looked up again (and pulled the bounded way)."""
        from docker.errors import ImageNotFound

        containers = self._engine.client().containers
        try:
            return containers.create(name, **arguments)
        except ImageNotFound:
            self._engine.forget_image(image)
            again = self._engine.resolve(image)
            return containers.create(again, **arguments)


def _contract(token: str) -> dict[str, str]:
    """The variables an instance gets after the model's own: the contract is not the
    model's to change."""
    return {
        "SAGEMAKER_BIND_TO_PORT": str(CONTAINER_PORT),
        "SM_MODEL_DIR": MODEL_MOUNT,
        # modelhost's own model server image checks it; any other image ignores it.
        "MODELHOST_INSTANCE_TOKEN": token,
    }


def _shut_down(response: Any) -> None:
    """End a streamed response's reads, even one blocked in another thread (closing the
    socket would not wake it; shutting it down does)."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
