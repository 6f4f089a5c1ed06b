"""Load generator: open- and closed-loop HTTP load with HDR latency histograms.

    from modelhost.loadgen import LoadSpec, Phase, run

    result = run(LoadSpec(
        url="http://127.0.0.1:8765/endpoints/iris/invocations",
        phases=(Phase(duration_s=10, rate=100), Phase(duration_s=30, rate=100, end_rate=1000)),
        payloads=(b'[[5.1, 3.5, 1.4, 0.2]]',),
    ))
    result.summary()      # p50/p90/p95/p99/max ms, throughput, errors by code
    result.timeline       # one Second per second: scheduled, sent, completed, errors, p99

`run` uses its own (uvloop) event loop; `run_load` is the coroutine for a running loop;
`run_in_subprocess` keeps the generator out of the caller's process.
"""

from __future__ import annotations

import asyncio

from modelhost.loadgen.payloads import read_payloads
from modelhost.loadgen.process import run_in_subprocess
from modelhost.loadgen.result import LoadResult, Second
from modelhost.loadgen.runner import run_load
from modelhost.loadgen.spec import LoadSpec, Mode, Phase


def run(spec: LoadSpec) -> LoadResult:
    """Run one load test to completion on a fresh uvloop event loop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run_load(spec))


__all__ = [
    "LoadResult",
    "LoadSpec",
    "Mode",
    "Phase",
    "Second",
    "read_payloads",
    "run",
    "run_in_subprocess",
    "run_load",
]
