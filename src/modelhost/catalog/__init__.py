"""Instance types and their prices, read from a data file so they can change without code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpu: int
    memory_gib: float
    gpus: int
    gpu_type: str | None
    usd_per_hour: float


@cache
def instance_types() -> dict[str, InstanceType]:
    raw = json.loads(resources.files(__package__).joinpath("instance_types.json").read_text())
    return {item["name"]: InstanceType(**item) for item in raw["instance_types"]}


def get_instance_type(name: str) -> InstanceType | None:
    return instance_types().get(name)


__all__ = ["InstanceType", "get_instance_type", "instance_types"]
