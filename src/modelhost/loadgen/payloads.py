"""Sample payloads from local files: each request picks one at random.

A folder gives one payload per file; a file gives one payload, or one per line with
`lines=True` (CSV rows, JSON lines).
"""

from __future__ import annotations

from pathlib import Path


def read_payloads(path: Path, lines: bool = False) -> tuple[bytes, ...]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    payloads: list[bytes] = []
    for file in files:
        data = file.read_bytes()
        if lines:
            payloads += [line for line in data.splitlines() if line.strip()]
        else:
            payloads.append(data)
    if not payloads:
        raise ValueError(f"no payloads found in {path}")
    return tuple(payloads)
