"""The load generator's engine: one asyncio loop, httptools keep-alive connections.

It reuses the router's own HTTP client (`modelhost.instances.InstanceClient`), which costs
a fraction of aiohttp's CPU per request; that is what lets one Python process drive
thousands of requests per second on two cores.

Open loop: a scheduler computes each request's intended send time from the phases' rate
and hands it to a pool of `max_connections` senders through a queue. Latency runs from
the intended time (less at most 2 ms, the scheduler's granularity), so queueing behind a slow
server, or behind a generator that cannot keep up, is measured, not hidden. Closed loop:
`users` senders each send, wait for the answer, and send again; the number of senders
follows the phases.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from modelhost.instances import InstanceClient, InstanceUnreachable
from modelhost.loadgen.result import LoadResult, Second
from modelhost.loadgen.spec import LoadSpec

_TICK_S = 0.001  # scheduler granularity; requests due within a tick go out together
_GRACE_S = 0.002
_USERS_TICK_S = 0.1


class _Run:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.client = InstanceClient()
        self.random = random.Random(spec.seed)
        self.result = LoadResult(mode=spec.mode, duration_s=0.0)
        self.seconds: dict[int, Second] = {}
        headers = [(b"Content-Type", spec.content_type.encode())]
        if spec.accept:
            headers.append((b"Accept", spec.accept.encode()))
        headers += [(k.encode(), v.encode()) for k, v in spec.headers]
        self.headers = headers
        self.address, self.path = spec.address, spec.path  # parsed once, not per request
        self.start = 0.0

    def _second(self, now: float) -> Second:
        index = int(now - self.start)
        second = self.seconds.get(index)
        if second is None:
            second = self.seconds[index] = Second(index)
        return second

    async def _send(self, intended: float) -> None:
        """One request; latency from `intended` (the scheduled time in open loop)."""
        spec = self.spec
        payloads = spec.payloads
        body = payloads[0] if len(payloads) == 1 else self.random.choice(payloads)
        now = time.perf_counter()
        # The timeout runs from the intended time: a request that waited for a connection
        # gets what is left, and one that waited past it is a timeout without being sent.
        left = spec.timeout_s - (now - intended)
        if left <= 0:
            self._error(now, "timeout")
            return
        self.result.sent += 1
        self._second(now).sent += 1
        code: str | None = None
        try:
            response = await self.client.request(
                self.address, b"POST", self.path, self.headers, body, left
            )
            if response.status >= 400:
                code = str(response.status)
        except TimeoutError:
            code = "timeout"
        except InstanceUnreachable:
            code = "connection"
        now = time.perf_counter()
        second = self._second(now)
        if code is None:
            micros = max(1, int((now - intended) * 1_000_000))
            self.result.histogram.record_value(micros)
            second.histogram.record_value(micros)
            second.completed += 1
        else:
            self._error(now, code)
            if code == "connection":
                await asyncio.sleep(0.01)  # a refused connect returns at once: do not spin

    def _error(self, now: float, code: str) -> None:
        self.result.errors[code] += 1
        self._second(now).errors += 1

    # ---------------------------------------------------------------- open loop

    async def _sender(self, queue: asyncio.Queue[float | None]) -> None:
        while (intended := await queue.get()) is not None:
            await self._send(intended)

    async def open_loop(self) -> None:
        queue: asyncio.Queue[float | None] = asyncio.Queue()
        senders = [
            asyncio.create_task(self._sender(queue)) for _ in range(self.spec.max_connections)
        ]
        phase_start = self.start
        for phase in self.spec.phases:
            # Requests are due where the integral of the rate crosses 1, 2, 3, ...
            sent_in_phase = 0
            r0, r1 = phase.rate_at(0), phase.rate_at(phase.duration_s)
            while True:
                now = time.perf_counter()
                elapsed = now - phase_start
                if elapsed >= phase.duration_s:
                    break
                due = _requests_due(r0, r1, phase.duration_s, elapsed)
                while sent_in_phase < due:
                    sent_in_phase += 1
                    intended = phase_start + _time_of(r0, r1, phase.duration_s, sent_in_phase)
                    self.result.scheduled += 1
                    self._second(intended).scheduled += 1
                    # The scheduler's wake-ups (~1.1 ms apart) are the generator's
                    # granularity, not the server's latency: up to _GRACE_S of lag is
                    # forgiven, anything beyond it counts.
                    queue.put_nowait(min(now, intended + _GRACE_S))
                await asyncio.sleep(_TICK_S)
            phase_start += phase.duration_s
        for _ in senders:
            queue.put_nowait(None)
        # Everything scheduled gets sent and answered (or times out): dropping the backlog
        # would hide exactly the overload an open loop is there to show.
        await asyncio.gather(*senders)

    # ---------------------------------------------------------------- closed loop

    async def _user(self, index: int, target: list[int], stop: asyncio.Event) -> None:
        while not stop.is_set() and index < target[0]:
            started = time.perf_counter()
            self.result.scheduled += 1
            self._second(started).scheduled += 1
            await self._send(started)

    async def closed_loop(self) -> None:
        target = [0]
        stop = asyncio.Event()
        users: dict[int, asyncio.Task[None]] = {}
        phase_start = self.start
        for phase in self.spec.phases:
            while (elapsed := time.perf_counter() - phase_start) < phase.duration_s:
                target[0] = min(phase.users_at(elapsed), self.spec.max_connections)
                for index in range(target[0]):
                    task = users.get(index)
                    if task is None or task.done():
                        users[index] = asyncio.create_task(self._user(index, target, stop))
                await asyncio.sleep(min(_USERS_TICK_S, phase.duration_s - elapsed))
            phase_start += phase.duration_s
        stop.set()
        await asyncio.gather(*users.values())

    async def run(self) -> LoadResult:
        self.start = time.perf_counter()
        try:
            if self.spec.mode == "open":
                await self.open_loop()
            else:
                await self.closed_loop()
        finally:
            self.client.close()
        result = self.result
        result.duration_s = time.perf_counter() - self.start
        last = max(self.seconds, default=-1)
        result.timeline = [self.seconds.get(i) or Second(i) for i in range(last + 1)]
        return result


def _requests_due(r0: float, r1: float, duration: float, t: float) -> int:
    """How many requests a linear ramp from r0 to r1 req/s has sent by time t."""
    return int(r0 * t + (r1 - r0) * t * t / (2 * duration))


def _time_of(r0: float, r1: float, duration: float, n: int) -> float:
    """When the n-th request of the ramp is due: solve r0·t + (r1-r0)·t²/(2·d) = n."""
    a = (r1 - r0) / (2 * duration)
    if abs(a) < 1e-12:
        return n / r0
    return (-r0 + math.sqrt(max(r0 * r0 + 4 * a * n, 0.0))) / (2 * a)


async def run_load(spec: LoadSpec) -> LoadResult:
    """Run one load test on the running event loop and return what it measured."""
    return await _Run(spec).run()
