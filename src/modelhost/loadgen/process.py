"""Running a load test in a child process.

A load generator sharing an event loop (or a GIL) with the system under test measures
itself as much as the system. The recommender runs inside the server, so it drives its
load from `python -m modelhost.loadgen`: the spec goes in on stdin as JSON, the result
comes back on stdout as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from modelhost.loadgen.result import LoadResult
from modelhost.loadgen.spec import LoadSpec


async def run_in_subprocess(spec: LoadSpec, grace_s: float = 30.0) -> LoadResult:
    """Run `spec` in a child process; cancelling this coroutine kills the child."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelhost.loadgen",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(spec.duration_s + spec.timeout_s + grace_s):
            stdout, stderr = await process.communicate(json.dumps(spec.to_json()).encode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(
            f"load generator failed (exit {process.returncode}): "
            f"{stderr.decode(errors='replace')[-2000:]}"
        )
    return LoadResult.from_json(json.loads(stdout))
