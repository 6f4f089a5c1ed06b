"""What the inference component API and the controller that places their copies share:
a copy's resource needs, an instance's room, the first-fit packing of copies onto a
variant's instances, and the batch size of a rolling update.

A variant that hosts inference components runs no model of its own: its instances are
capacity (the cores, memory and accelerators of their instance type) and each copy of a
component takes its `ComputeResourceRequirements` from one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelhost.catalog import InstanceType

#: The runtime header that names the component an invocation is for.
HEADER = b"x-amzn-sagemaker-inference-component"


@dataclass(frozen=True)
class Needs:
    """One copy's share of an instance."""

    cores: float
    memory_mb: int
    accelerators: float

    @classmethod
    def of(cls, specification: dict[str, Any]) -> Needs:
        compute = specification["ComputeResourceRequirements"]
        return cls(
            cores=float(compute.get("NumberOfCpuCoresRequired", 0.0)),
            memory_mb=int(compute["MinMemoryRequiredInMb"]),
            accelerators=float(compute.get("NumberOfAcceleratorDevicesRequired", 0.0)),
        )

    def describe(self) -> str:
        parts = [f"{self.cores:g} CPU cores", f"{self.memory_mb} MB of memory"]
        if self.accelerators:
            parts.append(f"{self.accelerators:g} accelerator devices")
        return ", ".join(parts)


def room(instance_type: InstanceType) -> Needs:
    """All an empty instance of the type offers."""
    return Needs(
        cores=float(instance_type.vcpu),
        memory_mb=int(instance_type.memory_gib * 1024),
        accelerators=float(instance_type.gpus),
    )


def fits(needs: Needs, free: Needs) -> bool:
    return (
        needs.cores <= free.cores + 1e-9
        and needs.memory_mb <= free.memory_mb
        and needs.accelerators <= free.accelerators + 1e-9
    )


def take(free: Needs, needs: Needs) -> Needs:
    return Needs(
        cores=free.cores - needs.cores,
        memory_mb=free.memory_mb - needs.memory_mb,
        accelerators=free.accelerators - needs.accelerators,
    )


def first_fit(needs: Needs, free: list[Needs]) -> int | None:
    """The first instance (by index) with room for one more copy, or None."""
    for index, left in enumerate(free):
        if fits(needs, left):
            return index
    return None


def batch_size(capacity: dict[str, Any] | None, copies: int) -> int | None:
    """Copies started at once by a rolling update (`MaximumBatchSize`) or its rollback
    (`RollbackMaximumBatchSize`) of a component with `copies` copies: at least one;
    None (all of them, as room allows) without a size."""
    if not capacity:
        return None
    if capacity["Type"] == "COPY_COUNT":
        return max(int(capacity["Value"]), 1)
    return max(math.floor(copies * float(capacity["Value"]) / 100.0), 1)
