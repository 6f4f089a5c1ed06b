"""What one running transform job needs at hand, read once from its record."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from modelhost.batch import DataProcessing
from modelhost.capture import BatchCapture

#: The variant name a job's instances are metered and counted under.
VARIANT = "transform"


class JobFailed(Exception):
    """Ends a job as Failed with this message as FailureReason."""


@dataclasses.dataclass
class Job:
    name: str
    record: dict[str, Any]
    processing: DataProcessing
    objects: list[tuple[str, str]]
    headers: list[tuple[bytes, bytes]]
    timeout_s: float
    retries: int
    concurrency: int
    work_dir: Path
    capture: BatchCapture | None = None
