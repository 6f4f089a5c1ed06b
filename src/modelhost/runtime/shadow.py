"""Shadow variants: a copy of a real-time request goes to each shadow variant of the
endpoint (`InitialVariantWeight` relative to the production variants' total is the share
of requests copied, at most all of them), after the client's answer is ready.

The copy runs as its own task on the loop, so the client never waits for it and never
sees how it went: a shadow's answers and failures show only in its own metrics
(`modelhost_invocations`, latency, 4xx/5xx with the shadow's variant name, the metrics
SageMaker publishes per shadow variant) and, with data capture, in its capture files
beside the production variant's. A shadow that falls behind (more than
`MAX_IN_FLIGHT` copies outstanding) misses copies (`modelhost_shadow_dropped`) rather than
piling them up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time

from modelhost import metrics
from modelhost.errors import SageMakerError
from modelhost.router import Answer, Deployment, Invocation, Router, VariantPool

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 64


class ShadowMirror:
    def __init__(self, router: Router) -> None:
        self.router = router
        self._in_flight: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def mirror(
        self, name: str, deployment: Deployment, request: Invocation, inference_id: str | None
    ) -> None:
        production = sum(p.weight for p in deployment.variants.values()) or 1.0
        copy = dataclasses.replace(request, target_variant=None)
        for pool in deployment.shadows.values():
            share = pool.weight / production
            if share < 1.0 and random.random() >= share:
                continue
            key = (name, pool.name)
            if self._in_flight.get(key, 0) >= MAX_IN_FLIGHT:
                metrics.SHADOW_DROPPED.labels(name, pool.name).inc()
                continue
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            task = asyncio.create_task(self._send(name, deployment, pool, copy, inference_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(
        self,
        name: str,
        deployment: Deployment,
        pool: VariantPool,
        request: Invocation,
        inference_id: str | None,
    ) -> None:
        started = time.perf_counter()
        try:
            answer = await self.router.mirror(pool, request)
        except SageMakerError as error:
            counter = metrics.INVOCATION_4XX if error.status < 500 else metrics.INVOCATION_5XX
            counter.labels(name, pool.name).inc()
            return
        except Exception:
            log.exception("endpoint %s: shadow variant %s failed", name, pool.name)
            metrics.INVOCATION_5XX.labels(name, pool.name).inc()
            return
        finally:
            self._in_flight[(name, pool.name)] -= 1
        _count(name, answer, time.perf_counter() - started)
        if deployment.capture is not None:
            deployment.capture.record(
                pool.name,
                request.content_type,
                request.body,
                answer.content_type,
                answer.body,
                inference_id,
            )


def _count(name: str, answer: Answer, total_s: float) -> None:
    series = metrics.for_variant(name, answer.variant)
    series.invocations.inc()
    series.model_latency.observe(answer.model_seconds)
    series.overhead_latency.observe(max(total_s - answer.model_seconds, 0.0))
