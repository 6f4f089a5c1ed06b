"""GPUs for the instance types that have them (`ml.g*`, `ml.p*`): which of the host's
NVIDIA GPUs each container gets, and a refusal that says why when the host has too few.

The host's GPUs are its `/dev/nvidiaN` device nodes (the NVIDIA driver makes one per
GPU). Each instance gets GPUs of its own, as each SageMaker instance has its own, taken
when its container starts and given back when the container is gone. An instance type
whose GPUs the host cannot give fails its endpoint rather than running the model on the
CPU: a model built for a GPU would run, slowly or not at all, on the wrong hardware with
nothing saying so.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from modelhost.catalog import InstanceType

_DEVICE = re.compile(r"^nvidia(\d+)$")


class GpusUnavailable(OSError):
    """The host has fewer free GPUs than the instance type has."""


class GpuPool:
    def __init__(self, devices: Path = Path("/dev")) -> None:
        self._devices = devices
        self._lock = threading.Lock()
        self._taken: dict[str, list[int]] = {}

    def host_gpus(self) -> list[int]:
        if not self._devices.is_dir():
            return []
        found = (_DEVICE.match(entry.name) for entry in self._devices.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def take(self, instance_id: str, kind: InstanceType) -> list[int]:
        """The GPU indexes `instance_id` gets (none for a CPU type)."""
        if kind.gpus == 0:
            return []
        with self._lock:
            host = self.host_gpus()
            what = f"instance type {kind.name} has {kind.gpus} GPU(s) ({kind.gpu_type})"
            if not host:
                raise GpusUnavailable(
                    f"{what} and this host has none (no /dev/nvidia* devices): run it on a "
                    "host with NVIDIA GPUs, their driver and the NVIDIA Container Toolkit "
                    "(CDI specs for podman), or choose a CPU instance type such as ml.m5.xlarge"
                )
            busy = {index for taken in self._taken.values() for index in taken}
            free = [index for index in host if index not in busy]
            if len(free) < kind.gpus:
                raise GpusUnavailable(
                    f"{what}; {len(free)} of this host's {len(host)} GPUs are free"
                )
            self._taken[instance_id] = free[: kind.gpus]
            return list(self._taken[instance_id])

    def give_back(self, instance_id: str) -> None:
        with self._lock:
            self._taken.pop(instance_id, None)
