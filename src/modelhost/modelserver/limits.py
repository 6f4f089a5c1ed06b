"""Hold an instance to its instance type's memory.

The limit is set by the instance itself, before the model loads, rather than by the
launcher: a launcher with threads cannot safely run code between fork and exec. RLIMIT_DATA
counts the heap and private anonymous mappings (where numpy arrays and Python objects
live), so a model that outgrows its type gets a MemoryError, reported as a ModelError,
instead of pushing the whole machine into swap.
"""

from __future__ import annotations

import resource


def limit_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
