"""The durable, ordered journal of one input object's output parts.

Answers are written in input order into a part file; a part is committed by making it
durable under its final name (`part-NNNNNN`) and only then counting it (and the input
offset it reaches) in the store. A part the store does not count was written after the
last commit, so a restarted server drops it and redoes its batches: nothing is done twice
or lost. When the object is done its parts are concatenated into its `.out`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO, Any

from modelhost.storage import ObjectStore


def part_name(number: int, committed: bool = True) -> str:
    return f"part-{number:06d}" if committed else f".part-{number:06d}"


def open_part(parts_dir: Path, number: int) -> IO[bytes]:
    """A new part, written under a hidden name until it is sealed."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    return (parts_dir / part_name(number, committed=False)).open("wb")


def seal(part: IO[bytes], parts_dir: Path, number: int) -> None:
    """Make a finished part durable under its final name before the store points at it."""
    part.flush()
    os.fsync(part.fileno())
    part.close()
    os.replace(parts_dir / part_name(number, committed=False), parts_dir / part_name(number))


def drop_uncommitted(parts_dir: Path, committed: int) -> None:
    """Parts the store does not count were written after the last commit: a crash came
    between writing them and recording them. Their batches run again."""
    if not parts_dir.is_dir():
        return
    for path in parts_dir.iterdir():
        number = path.name.rpartition("-")[2]
        if path.name.startswith(".") or not number.isdigit() or int(number) >= committed:
            path.unlink(missing_ok=True)


def assemble(objects: ObjectStore, parts_dir: Path, count: int, target: str) -> None:
    """Concatenate an object's committed parts into its `.out`, written whole."""
    with objects.open(target, "wb") as out:
        for number in range(count):
            with (parts_dir / part_name(number)).open("rb") as part:
                shutil.copyfileobj(part, out, 1024 * 1024)


def new_progress(inputs: list[Any]) -> dict[str, Any]:
    """A job's progress before any part: one state per input object."""
    return {
        "inputs": inputs,
        "objects": [{"done": False, "offset": 0, "records": 0, "parts": 0} for _ in inputs],
    }


def record_commit(progress: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    """Apply one object's commit to a job's progress (a new offset counts one more part;
    `restart` forgets its parts, `writer` names the server whose disk holds them);
    returns the object's new state."""
    state = progress["objects"][index]
    if changes.pop("restart", False):  # its parts are gone: from the first record again
        state.update(offset=0, records=0, parts=0)
        state.pop("writer", None)
    if "offset" in changes:
        state["parts"] += 1
    state.update(changes)
    return dict(state)


def summary(progress: dict[str, Any]) -> dict[str, int]:
    """TransformProgress, as DescribeTransformJob shows it."""
    states = progress["objects"]
    return {
        "ObjectsTotal": len(states),
        "ObjectsCompleted": sum(1 for s in states if s["done"]),
        "RecordsProcessed": sum(s["records"] for s in states),
        "BytesProcessed": sum(s["offset"] for s in states),
    }
