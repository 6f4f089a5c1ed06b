"""The `process` backend: each instance is its own OS process running the model server.

A crashing or slow model must never take the control plane down with it, so model code
never runs in the server's process. Instances are started from the same Python, told the
parent's pid so they exit if the server is killed, held to their instance type's memory
(CPU-only types; GPU runtimes reserve address space far beyond what they use), and to its
vCPUs through the BLAS thread variables (threads spinning in several processes on few
cores ruin latency). Where the machine lets us, each instance also runs in its own control
group (:mod:`.cgroups`) with the type's CPU quota and memory limit, removed when it ends.

By default instances are forked from the fork server (:mod:`.forkserver`), a parent that
has already imported the model server, numpy and scikit-learn, instead of started as a
fresh interpreter: that is most of an instance's start time, and all of a serverless cold
start's. `fork=False` starts each one as `python -m modelhost.modelserver`. A model with a
`code/requirements.txt` gets a package environment first (:mod:`.packages`) and starts
as that environment's fresh interpreter.

Instances are confined (:mod:`.isolation`): an allow-listed environment, their own user
when the server is root, and a token every request to their port must carry
(:func:`~modelhost.instances.client.grant_token`). An instance and everything it starts
end together, with or without control groups: it leads its own session, makes itself a
child subreaper and dies with its parent (:mod:`modelhost.modelserver.confine`), and the
backend kills its whole tree when it has to kill it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

from modelhost.instances import cgroups
from modelhost.instances.base import Instance, InstanceSpec, ResourceUsage
from modelhost.instances.cgroups import Cgroups, Group
from modelhost.instances.client import grant_token, revoke_token
from modelhost.instances.forking import ForkServer
from modelhost.instances.forkserver import THREAD_VARIABLES
from modelhost.instances.isolation import (
    InstanceDirs,
    InstanceUser,
    can_run_as,
    inherited_environment,
    protect_data_dir,
    resolve_user,
)
from modelhost.instances.local import free_port, log_tail
from modelhost.instances.packages import PackageEnvironments
from modelhost.instances.pipeline import PipelineInstance, end_all, member_spec
from modelhost.instances.readiness import wait_until_answering
from modelhost.modelserver.processtree import kill_tree

logger = logging.getLogger(__name__)


class _Process(Protocol):
    """What an instance needs of its process: `subprocess.Popen` or a `ForkedProcess`."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class ProcessInstance:
    def __init__(
        self,
        spec: InstanceSpec,
        process: _Process,
        host: str,
        port: int,
        group: Group | None,
        token: str,
        home: Path,
        dirs: InstanceDirs,
    ) -> None:
        self.spec = spec
        self.process = process
        self.host = host
        self.port = port
        self.group = group
        self.token = token
        self.home = home
        self._dirs = dirs
        self._ended = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def usage(self) -> ResourceUsage | None:
        return None  # read through `pid`

    def is_alive(self) -> bool:
        if self.process.poll() is None:
            return True
        # A dead instance is replaced without being stopped: what it left goes now.
        self._release()
        return False

    def _release(self) -> None:
        """Once the process is gone: the rest of its session, its token, its home."""
        self._release_group()
        if self._ended:
            return
        self._ended = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # it led its own session
        revoke_token(self.address, self.token)
        self._dirs.remove(self.home)

    def _release_group(self) -> None:
        if self.group is not None and self.group.remove():
            self.group = None

    def failure_detail(self) -> str:
        tail = log_tail(self.spec.log_path)
        return f"instance exited with code {self.process.returncode}" + (
            f": {tail}" if tail else ""
        )

    async def wait_ready(self, timeout_s: float) -> None:
        # A forked instance starts in tens of ms: poll often.
        await wait_until_answering(self, timeout_s, poll_s=0.01)

    async def stop(self) -> None:
        try:
            await self._terminate()
        finally:
            self._release()
            # The kernel may hold a group for a moment after its last process exits.
            for _ in range(20):
                self._release_group()
                if self.group is None:
                    break
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        await self.stop()  # waits for the exit and removes the group

    async def _terminate(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.05)
        # Its descendants first, while it still holds them as their subreaper.
        kill_tree(self.process.pid)
        self.process.kill()
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.05)


class ProcessBackend:
    """`cgroups` is "auto" (use control groups where writable) or "off"; `cpu_scale`
    multiplies every type's vCPUs into cores of this machine; `scope` names this server's
    parent group (a hash of its data directory); `host` is the address instances
    listen on: loopback, unless something off this machine must reach them (a Ray node's
    address, :mod:`.ray_backend`; the operator's MODELHOST_INSTANCE_ADVERTISE_HOST)."""

    def __init__(
        self,
        fork: bool = True,
        cgroups: str = "auto",
        cpu_scale: float = 1.0,
        scope: str = "default",
        data_dir: Path | None = None,
        instance_user: str = "",
        host: str = "127.0.0.1",
        requirements_timeout_s: float = 600.0,
    ) -> None:
        self._user: InstanceUser | None = resolve_user(instance_user)
        self._user_named = bool(instance_user.strip())
        self._data_dir = data_dir
        root = (
            (data_dir / "instances")
            if data_dir is not None
            else Path(os.environ.get("TMPDIR", "/tmp")) / f"modelhost-instances-{scope}"
        )
        self._dirs = InstanceDirs(root, self._user)
        packages = (
            (data_dir / "packages")
            if data_dir is not None
            else Path(os.environ.get("TMPDIR", "/tmp")) / f"modelhost-packages-{scope}"
        )
        self._packages = PackageEnvironments(packages, requirements_timeout_s)
        self._prepared = False
        self._unusable: str | None = None  # why the instance user cannot run instances
        self._forkserver = ForkServer() if fork else None
        self._cgroups_mode = cgroups
        self._cpu_scale = cpu_scale
        self._scope = scope
        self._host = host
        self._cgroups: Cgroups | None = None
        self._detected = False

    def _groups(self) -> Cgroups | None:
        """Detect once; a previous run's leftover groups are removed then."""
        if not self._detected:
            self._detected = True
            self._cgroups, reason = cgroups.detect(self._cgroups_mode, self._scope, self._cpu_scale)
            if self._cgroups is None:
                logger.warning(
                    "instances run without control groups (%s): CPU is limited "
                    "only by thread counts, memory by RLIMIT_DATA",
                    reason,
                )
            else:
                self._cgroups.remove_all()
                logger.info(
                    "instances run in cgroup v%d groups under %s",
                    self._cgroups.version,
                    ", ".join(sorted({str(p) for p in self._cgroups.parents.values()})),
                )
        return self._cgroups

    async def _prepare(self) -> None:
        """Once: close the data directory, clear a previous run's instance folders, and
        make sure the instance user can run the model server at all."""
        if self._prepared:
            return
        self._prepared = True
        if self._data_dir is not None:
            protect_data_dir(self._data_dir)
        self._dirs.remove_all()
        self._dirs.prepare()
        self._packages.remove_partial()
        if self._user is None:
            return
        models = self._dirs.root.parent / "models" if self._data_dir else Path("/")
        reason = await asyncio.to_thread(can_run_as, self._user, inherited_environment(), models)
        if reason is None:
            logger.info("instances run as %s (uid %d)", self._user.name, self._user.uid)
        elif self._user_named:
            self._unusable = reason
            logger.error("instances cannot start: %s", reason)
        else:
            logger.warning(
                "instances run as the server's own user, NOT confined: %s; "
                "or name a user in MODELHOST_INSTANCE_USER",
                reason,
            )
            self._user = self._dirs.user = None

    async def warm(self) -> None:
        """Find the control groups and start the fork server ahead of the first instance."""
        self._groups()
        await self._prepare()
        if self._forkserver is not None:
            await self._forkserver.ensure_running()

    async def release(self, endpoint: str) -> None:
        """Nothing is kept for one endpoint: the fork server serves them all."""

    async def close(self) -> None:
        if self._forkserver is not None:
            await self._forkserver.close()
        if self._cgroups is not None:
            self._cgroups.close()

    async def start(self, spec: InstanceSpec) -> ProcessInstance | PipelineInstance:
        await self._prepare()
        if self._unusable:
            raise OSError(self._unusable)
        kind = spec.instance_type
        threads = str(cgroups.thread_count(kind.vcpu, self._cpu_scale))
        limits = {}
        if kind.gpus == 0:
            limits["MODELHOST_MEMORY_LIMIT_MB"] = str(int(kind.memory_gib * 1024))
        confined: dict[str, str] = {}
        group = None
        if (groups := self._groups()) is not None:
            group = groups.create(spec.instance_id, kind.vcpu, int(kind.memory_gib * 1024**3))
            # After the model's environment: a model cannot opt out of its group.
            confined["MODELHOST_CGROUP_PROCS"] = os.pathsep.join(map(str, group.procs_files))
        try:
            if spec.containers:
                return await self._start_pipeline(spec, limits, confined, threads, group)
            extra = {**limits, **spec.environment, **confined}
            return await self._spawn(spec, free_port(self._host), extra, threads, group)
        except BaseException:
            if group is not None:
                group.remove()
            raise

    async def _start_pipeline(
        self,
        spec: InstanceSpec,
        limits: dict[str, str],
        confined: dict[str, str],
        threads: str,
        group: Group | None,
    ) -> PipelineInstance:
        """One model server per container, each with its own port, model dir, home and
        log, all in the instance's one group (which the pipeline instance removes)."""
        members: list[tuple[str, Instance]] = []
        ports: set[int] = set()
        try:
            for container in spec.containers:
                port = free_port(self._host)
                while port in ports:
                    port = free_port(self._host)
                ports.add(port)
                extra = {**limits, **container.environment, **confined}
                member = member_spec(spec, container)
                members.append(
                    (container.hostname, await self._spawn(member, port, extra, threads, None))
                )
        except BaseException:
            await end_all(members)
            raise
        return PipelineInstance(spec, members, group)

    async def _spawn(
        self,
        spec: InstanceSpec,
        port: int,
        extra: dict[str, str],
        threads: str,
        group: Group | None,
    ) -> ProcessInstance:
        token = secrets.token_urlsafe(32)
        home = self._dirs.home(spec.instance_id)
        user = self._user
        # What the interpreter needs before it can read its launch file.
        base = {
            **inherited_environment(),
            **dict.fromkeys(THREAD_VARIABLES, threads),
            "PYTHONUNBUFFERED": "1",
        }
        # The instance's own: it reads them from the launch file (root-only, deleted once
        # read), so they never pass through the fork server or a readable environment.
        own = {
            "HOME": str(home),
            "TMPDIR": str(home),
            **({"USER": user.name, "LOGNAME": user.name} if user else {}),
            **extra,
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "MODELHOST_BIND_HOST": self._host,
            "SM_MODEL_DIR": str(spec.model_dir),
            "MODELHOST_FRAMEWORK": spec.framework,
            "MODELHOST_PARENT_PID": str(os.getpid()),
            "MODELHOST_INSTANCE_TOKEN": token,
            **(
                {"MODELHOST_INSTANCE_UID": str(user.uid), "MODELHOST_INSTANCE_GID": str(user.gid)}
                if user
                else {}
            ),
        }
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            python = await self._packages.python_for(spec.model_dir, spec.log_path)
        except BaseException:
            self._dirs.remove(home)
            raise
        grant_token((self._host, port), token)
        try:
            process = await self._launch(spec, base, own, python)
        except BaseException:
            revoke_token((self._host, port), token)
            self._dirs.remove(home)
            raise
        return ProcessInstance(spec, process, self._host, port, group, token, home, self._dirs)

    async def _launch(
        self,
        spec: InstanceSpec,
        base: dict[str, str],
        own: dict[str, str],
        python: Path | None = None,
    ) -> _Process:
        """`python` is the model's package environment's interpreter (:mod:`.packages`):
        such an instance starts fresh, its log already holding pip's output."""
        if self._forkserver is not None and python is None:
            launch = self._dirs.launch_file(own)
            try:
                return await self._forkserver.spawn(
                    {**base, "MODELHOST_LAUNCH_FILE": str(launch)}, spec.log_path
                )
            except (OSError, TimeoutError) as exc:
                launch.unlink(missing_ok=True)
                logger.warning(
                    "instance %s: %s; starting it as a fresh interpreter", spec.instance_id, exc
                )
        launch = self._dirs.launch_file(own)
        env = {**base, "MODELHOST_LAUNCH_FILE": str(launch)}
        log: int | BinaryIO = subprocess.DEVNULL
        if spec.log_path is not None:
            log = spec.log_path.open("wb" if python is None else "ab")
        try:
            process = subprocess.Popen(
                [str(python or sys.executable), "-m", "modelhost.modelserver"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
            )
        except BaseException:
            launch.unlink(missing_ok=True)
            raise
        finally:
            if not isinstance(log, int):
                log.close()
        return process
