"""Instance types and their prices, read from a data file so they can change without code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


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


@cache
def _serverless() -> dict[str, Any]:
    return dict(json.loads(resources.files(__package__).joinpath("serverless.json").read_text()))


def serverless_usd_per_gb_second() -> float:
    """Serverless inference is billed by request duration times memory."""
    return float(_serverless()["usd_per_gb_second"])


def serverless_instance_type(memory_mb: int) -> InstanceType:
    """What a serverless instance of `memory_mb` runs as: that much memory, vCPUs in
    proportion (SageMaker does not publish them; one per `gb_per_vcpu` GB here), priced per
    hour at the per-GB-second list price."""
    gib = memory_mb / 1024
    return InstanceType(
        name=f"ml.serverless.{memory_mb}mb",
        vcpu=max(1, round(gib / _serverless()["gb_per_vcpu"])),
        memory_gib=gib,
        gpus=0,
        gpu_type=None,
        usd_per_hour=gib * serverless_usd_per_gb_second() * 3600,
    )


__all__ = [
    "InstanceType",
    "get_instance_type",
    "instance_types",
    "serverless_instance_type",
    "serverless_usd_per_gb_second",
]
