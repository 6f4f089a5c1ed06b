"""Inference recommendation candidates, as the recommender, the API and the CLI name them."""

from __future__ import annotations

from typing import Any


def candidate_label(candidate: dict[str, Any]) -> str:
    """How people name a candidate: its instance type, or its serverless memory size."""
    if "ServerlessConfig" in candidate:
        return f"serverless {candidate['ServerlessConfig'].get('MemorySizeInMB')} MB"
    return str(candidate.get("InstanceType"))
