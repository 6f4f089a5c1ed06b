"""What the model server reads from its environment, and nothing else.

The server is started by a launcher (a subprocess, a container runtime, a Ray actor) that
can only talk to it through environment variables, the way SageMaker configures its
containers. Parsing them in one place gives every bad value the same clear startup error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelhost.modelserver.errors import StartupError

ENV_PORT = "SAGEMAKER_BIND_TO_PORT"
ENV_HOST = "MODELHOST_BIND_HOST"
ENV_MODEL_DIR = "SM_MODEL_DIR"
ENV_PROGRAM = "SAGEMAKER_PROGRAM"
ENV_SUBMIT_DIRECTORY = "SAGEMAKER_SUBMIT_DIRECTORY"
ENV_FRAMEWORK = "MODELHOST_FRAMEWORK"
ENV_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
ENV_PARENT_PID = "MODELHOST_PARENT_PID"
ENV_DEFAULT_ACCEPT = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
ENV_MEMORY_LIMIT = "MODELHOST_MEMORY_LIMIT_MB"
ENV_CGROUP_PROCS = "MODELHOST_CGROUP_PROCS"
ENV_TOKEN = "MODELHOST_INSTANCE_TOKEN"
ENV_MAX_BATCH_SIZE = "MODELHOST_MAX_BATCH_SIZE"
ENV_MAX_BATCH_DELAY_MS = "MODELHOST_MAX_BATCH_DELAY_MS"
#: TorchServe's names in SageMaker's PyTorch containers; same meaning, same units (ms).
ENV_TS_BATCH_SIZE = "SAGEMAKER_TS_BATCH_SIZE"
ENV_TS_MAX_BATCH_DELAY = "SAGEMAKER_TS_MAX_BATCH_DELAY"
#: Set by a transform job on its instances: each request is a mini-batch already.
ENV_TRANSFORM = "SAGEMAKER_BATCH"
#: "true": serve many models, loaded and unloaded through the `/models` API (SageMaker's
#: multi-model contract) instead of one model loaded at start.
ENV_MULTI_MODEL = "SAGEMAKER_MULTI_MODEL"
#: Model calls shown to take at most this many ms run on the event loop (0: never; see
#: modelhost.modelserver.inline).
ENV_INLINE_CALL_MS = "MODELHOST_INLINE_CALL_MS"
#: How long a request may be held for company when no delay is given.
DEFAULT_BATCH_DELAY_MS = 5.0
DEFAULT_INLINE_CALL_MS = 1.0

FRAMEWORK_NAMES = ("sklearn", "onnx", "python")

# How a batched answer reports its batch to the router, which keeps the metrics (an
# instance's port answers the router only, so the router is where they can be seen).
#: On the first answer of each batch: how many requests its model call served.
BATCH_SIZE_HEADER = b"x-modelhost-batch-size"
#: On every batched answer: microseconds the request waited before its model call started.
QUEUE_WAIT_HEADER = b"x-modelhost-queue-wait-us"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """The model server's whole configuration."""

    host: str = "0.0.0.0"
    port: int = 8080
    model_dir: Path = Path("/opt/ml/model")
    framework: str = "python"
    # Threads that run model code; also reported as MaxConcurrentTransforms.
    workers: int = 1
    # SAGEMAKER_PROGRAM: the user module's file name in the code directory.
    program: str | None = None
    # SAGEMAKER_SUBMIT_DIRECTORY, when it names a local directory.
    submit_directory: Path | None = None
    parent_pid: int | None = None
    # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT: the Accept used for a missing or */* header.
    default_accept: str | None = None
    # MODELHOST_MEMORY_LIMIT_MB: the instance type's memory, enforced on the process.
    memory_limit_mb: int | None = None
    # MODELHOST_CGROUP_PROCS: the cgroup.procs files of the groups holding this instance to
    # its type's CPU and memory, joined before the model loads.
    cgroup_procs: tuple[Path, ...] = ()
    # MODELHOST_INSTANCE_TOKEN: every request must carry it (X-Modelhost-Instance-Token),
    # so the port answers the server's router and nobody else on the machine.
    token: str | None = None
    # MODELHOST_MAX_BATCH_SIZE / SAGEMAKER_TS_BATCH_SIZE: up to this many concurrent
    # requests go to the model in one call (1: every request alone).
    max_batch_size: int = 1
    # MODELHOST_MAX_BATCH_DELAY_MS / SAGEMAKER_TS_MAX_BATCH_DELAY: the longest a request is
    # held for others to join its batch (see modelhost.modelserver.batching).
    max_batch_delay_ms: float = DEFAULT_BATCH_DELAY_MS
    # SAGEMAKER_MULTI_MODEL=true: no model at start; models come and go through /models.
    multi_model: bool = False
    # MODELHOST_INLINE_CALL_MS: calls shown to take at most this long run on the loop.
    inline_call_ms: float = DEFAULT_INLINE_CALL_MS

    @property
    def code_dir(self) -> Path:
        """Where user code lives: the submit directory if given, else ``<model_dir>/code``."""
        return self.submit_directory or self.model_dir / "code"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; raise :class:`StartupError` naming the variable on a bad value."""
        env = os.environ if environ is None else environ
        framework = (env.get(ENV_FRAMEWORK) or "python").strip().lower()
        if framework not in FRAMEWORK_NAMES:
            expected = ", ".join(FRAMEWORK_NAMES)
            raise StartupError(f"invalid {ENV_FRAMEWORK}={framework!r}: expected one of {expected}")
        port = _int(env, ENV_PORT, 8080, minimum=0)
        if port > 65535:
            raise StartupError(f"invalid {ENV_PORT}={port}: not a TCP port")
        parent = env.get(ENV_PARENT_PID)
        max_batch_size, max_batch_delay_ms = _batching(env)
        return cls(
            host=env.get(ENV_HOST) or "0.0.0.0",
            port=port,
            model_dir=Path(env.get(ENV_MODEL_DIR) or "/opt/ml/model"),
            framework=framework,
            workers=_int(env, ENV_WORKERS, 1, minimum=1),
            program=env.get(ENV_PROGRAM) or None,
            submit_directory=_local_dir(env.get(ENV_SUBMIT_DIRECTORY)),
            parent_pid=_int(env, ENV_PARENT_PID, 0, minimum=1) if parent else None,
            default_accept=env.get(ENV_DEFAULT_ACCEPT) or None,
            memory_limit_mb=_int(env, ENV_MEMORY_LIMIT, 0, minimum=1)
            if env.get(ENV_MEMORY_LIMIT)
            else None,
            cgroup_procs=tuple(
                Path(p) for p in (env.get(ENV_CGROUP_PROCS) or "").split(os.pathsep) if p
            ),
            token=env.get(ENV_TOKEN) or None,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            multi_model=(env.get(ENV_MULTI_MODEL) or "").strip().lower() == "true",
            inline_call_ms=_milliseconds(env, ENV_INLINE_CALL_MS, DEFAULT_INLINE_CALL_MS, 1000),
        )


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StartupError(f"invalid {name}={raw!r}: not an integer") from None
    if value < minimum:
        raise StartupError(f"invalid {name}={raw!r}: must be >= {minimum}")
    return value


def _batching(env: Mapping[str, str]) -> tuple[int, float]:
    """The batch size and delay, from modelhost's names or TorchServe's (which must agree
    when both are set). A transform job's instances never batch: each of their requests
    is a mini-batch the job already sized to its MaxPayloadInMB, and merging them would
    exceed it."""
    size = _one_of(env, ENV_MAX_BATCH_SIZE, ENV_TS_BATCH_SIZE)
    delay = _one_of(env, ENV_MAX_BATCH_DELAY_MS, ENV_TS_MAX_BATCH_DELAY)
    max_size = _int(env, size, 1, minimum=1) if size else 1
    max_delay = (
        _milliseconds(env, delay, DEFAULT_BATCH_DELAY_MS, 60_000)
        if delay
        else DEFAULT_BATCH_DELAY_MS
    )
    if max_size > 1 and (env.get(ENV_TRANSFORM) or "").lower() == "true":
        log.info("%s=%d ignored in a transform job: its requests are mini-batches", size, max_size)
        max_size = 1
    return max_size, max_delay


def _milliseconds(env: Mapping[str, str], name: str, default: float, maximum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StartupError(f"invalid {name}={raw!r}: not a number of milliseconds") from None
    if not 0 <= value <= maximum:
        raise StartupError(f"invalid {name}={raw!r}: must be between 0 and {maximum:g} ms")
    return value


def _one_of(env: Mapping[str, str], name: str, alias: str) -> str | None:
    """Which of two names for one setting is set (None if neither); both, only if equal."""
    value, other = (env.get(name) or "").strip(), (env.get(alias) or "").strip()
    if value and other and value != other:
        raise StartupError(f"{name}={value!r} and {alias}={other!r} disagree; set one of them")
    if value:
        return name
    return alias if other else None


def _local_dir(value: str | None) -> Path | None:
    """SageMaker may give an ``s3://`` tarball here; only a local directory can be used as is."""
    if not value or value.startswith("s3://"):
        return None  # an archive: the server unpacked it as <model_dir>/code
    path = Path(value.removeprefix("file://"))
    if path.is_dir():
        return path
    log.warning(
        "ignoring %s=%s: not a local directory (using <model_dir>/code)",
        ENV_SUBMIT_DIRECTORY,
        value,
    )
    return None
