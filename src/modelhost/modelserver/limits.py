"""Hold an instance to its instance type's memory (and, through its control groups, CPU).

The limit is set by the instance itself, before the model loads, rather than by the
launcher: a launcher with threads cannot safely run code between fork and exec. RLIMIT_DATA
counts the heap and private anonymous mappings (where numpy arrays and Python objects
live), so a model that outgrows its type gets a MemoryError, reported as a ModelError,
instead of pushing the whole machine into swap.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from modelhost.modelserver.errors import StartupError


def limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def join_cgroups(procs_files: tuple[Path, ...]) -> None:
    """Move this process into the groups the backend made for it (see
    :mod:`modelhost.instances.cgroups`), before the model loads or starts a thread."""
    for procs in procs_files:
        try:
            procs.write_text(str(os.getpid()))
        except OSError as exc:
            raise StartupError(f"cannot join control group {procs.parent}: {exc}") from exc
