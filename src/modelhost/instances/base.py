"""The interface every instance backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modelhost.catalog import InstanceType


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a multi-container model: its own model server in the instance,
    with its own artifacts, handlers and environment."""

    hostname: str
    model_dir: Path
    framework: str
    environment: dict[str, str] = field(default_factory=dict)
    image: str = ""


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    model_dir: Path
    framework: str  # "sklearn" | "onnx" | "python": the built-in model server handlers
    instance_type: InstanceType
    environment: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    # Where the model's data lives (its ModelDataUrl or S3Uri; "": none): a backend whose
    # instances run off this machine reads it there instead of `model_dir`.
    model_data_url: str = ""
    # The model's `PrimaryContainer.Image`: what a container backend runs ("": none, the
    # built-in model server only).
    image: str = ""
    # How long the instance may take to answer /ping after it starts (the variant's
    # ContainerStartupHealthCheckTimeoutInSeconds); None: the server's default.
    startup_timeout_s: float | None = None
    # Told, from a worker thread, what the instance waits for before it can start (an
    # image pull's progress), so DescribeEndpoint can show it.
    on_progress: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    # A multi-container model's containers, in pipeline order (empty: one container, the
    # fields above), and how they are invoked: "Serial" or "Direct".
    containers: tuple[ContainerSpec, ...] = ()
    execution_mode: str = ""
    # The endpoint the instance serves ("": none, a job's): what a backend keeps for an
    # endpoint's sake (a container backend's spares) goes when it is released.
    endpoint: str = ""


@dataclass(frozen=True)
class ResourceUsage:
    """A reading of an instance's model server and its workers, taken where they run."""

    cpu_seconds: float
    rss_bytes: int
    at: float  # time.monotonic() on this machine when the reading arrived


class Instance(Protocol):
    spec: InstanceSpec

    @property
    def address(self) -> tuple[str, int]:
        """Host and port of the model server."""
        ...

    @property
    def pid(self) -> int | None:
        """The model server's process id, for CPU and memory readings; None where the
        backend has no local process."""
        ...

    def usage(self) -> ResourceUsage | None:
        """The latest reading, for a backend whose instances have no local `pid`; None
        where `pid` is the way to read them."""
        ...

    def is_alive(self) -> bool: ...

    def failure_detail(self) -> str:
        """Why the instance is gone, with the tail of its log, for FailureReason."""
        ...

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once /ping answers 200; raise RuntimeError with the reason otherwise."""
        ...

    async def stop(self) -> None: ...

    async def kill(self) -> None:
        """Stop at once, without the grace a stop gives in-flight requests: for an instance
        that stopped answering, whose requests are retried elsewhere once it is gone."""
        ...


class InstanceBackend(Protocol):
    async def warm(self) -> None:
        """Get ready to start instances quickly (called once when the server starts)."""
        ...

    async def start(self, spec: InstanceSpec) -> Instance: ...

    async def release(self, endpoint: str) -> None:
        """The endpoint is deleted and its instances stopped: drop whatever was kept
        ready for it alone."""
        ...

    async def close(self) -> None:
        """Release what `warm` set up; instances are stopped before this."""
        ...
