"""Fallback load generator for machines without wrk: an asyncio + aiohttp closed loop.

Run as its own process by `_common.LoadGenerator` so its CPU is not charged to the
benchmark driver, and so it speaks the same one-line result format as the wrk Lua script.
`connections` workers each keep one keep-alive connection and send the next request as
soon as the previous answer arrives (closed loop, like wrk). It costs several times more
CPU per request than wrk, so on a 2-core machine its throughput numbers are lower bounds;
prefer wrk (`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def _worker(session: object, url: str, body: bytes, headers: dict[str, str],
                  stop_at: float, latencies: list[float], errors: list[int]) -> None:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors.append(1)


async def _run(url: str, connections: int, duration_s: float, body: bytes,
               content_type: str) -> dict[str, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=5)
    latencies: list[float] = []
    errors: list[int] = []
    headers = {"Content-Type": content_type}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     skip_auto_headers=("User-Agent",)) as session:
        started = time.perf_counter()
        stop_at = started + duration_s
        await asyncio.gather(*(
            _worker(session, url, body, headers, stop_at, latencies, errors)
            for _ in range(connections)
        ))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6 if latencies \
            else 0.0

    mean = sum(latencies) / len(latencies) * 1e6 if latencies else 0.0
    return {"requests": len(latencies) + len(errors), "duration_us": elapsed * 1e6,
            "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99),
            "mean_us": mean, "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--body", default="")
    args = parser.parse_args()
    try:
        from uvloop import new_event_loop as loop_factory
    except ImportError:
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(_run(args.url, args.connections, args.duration,
                                 args.body.encode(), args.content_type))
    print("LOADGEN_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
