"""One candidate of a recommendation job: the temporary endpoint it is measured on, named
stably so a restarted server finds what it left behind, and the benchmark of a candidate
that was not measured."""

from __future__ import annotations

import hashlib
from typing import Any


class CandidateFailed(Exception):
    """This candidate could not be benchmarked; the job goes on with the others."""


def endpoint_name(job: str, index: int) -> str:
    """Stable per job and candidate, so a restarted server finds what it left behind."""
    return f"recommender-{hashlib.sha256(job.encode()).hexdigest()[:12]}-{index}"


def endpoint_configuration(endpoint: str, candidate: dict[str, Any]) -> dict[str, Any]:
    return {"EndpointName": endpoint, "VariantName": "AllTraffic", **candidate}


def failed_benchmark(job: str, index: int, step: dict[str, Any], reason: str) -> dict[str, Any]:
    """InferenceBenchmark of a candidate that was not (or could not be) benchmarked."""
    return {
        "ModelConfiguration": {},
        "FailureReason": reason,
        "EndpointConfiguration": endpoint_configuration(
            endpoint_name(job, index), step["_candidate"]
        ),
    }
