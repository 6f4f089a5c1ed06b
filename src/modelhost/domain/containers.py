"""A model's containers: one `PrimaryContainer`, or `Containers` (2 to 15) run as an
inference pipeline (`InferenceExecutionConfig.Mode` Serial) or called one at a time by
hostname (Direct). The API writes these records and the controllers read them; this is
where both agree on what a model's containers are and what each one is called."""

from __future__ import annotations

from typing import Any

SERIAL = "Serial"
DIRECT = "Direct"


def containers_of(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's containers in the order a serial pipeline runs them."""
    if "Containers" in model:
        return list(model["Containers"])
    return [model["PrimaryContainer"]]


def is_pipeline(model: dict[str, Any]) -> bool:
    return "Containers" in model


def execution_mode(model: dict[str, Any]) -> str:
    """Serial or Direct for a multi-container model (Serial unless the model says)."""
    return str(model.get("InferenceExecutionConfig", {}).get("Mode", SERIAL))


def hostname(container: dict[str, Any], index: int) -> str:
    """The container's `ContainerHostname`, or the name SageMaker-style pipelines run it
    under when a serial pipeline's container has none (its position, from 1)."""
    return str(container.get("ContainerHostname") or f"container-{index + 1}")
