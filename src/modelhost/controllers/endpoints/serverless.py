"""The serverless scaler: instances start when requests need them and stop when idle.

A serverless variant needs one instance per `serverless_instance_concurrency` requests in
flight, at least the instances holding its provisioned concurrency, at most its share of
MaxConcurrency (capped by `serverless_max_instances`). The router calls `demand` as each
request arrives, so a cold start begins at once; the endpoint controller calls `tick`
every health interval to stop instances idle longer than `serverless_idle_s` and to keep
provisioned ones warm. Instances are started through the backend like any other (from the
fork server by default, which is what makes a cold start short).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from modelhost import metrics
from modelhost.catalog import serverless_usd_per_gb_second
from modelhost.config import Settings
from modelhost.controllers.deployment import numbered, start_ready
from modelhost.domain.endpoints import instance_bounds
from modelhost.instances import InstanceBackend, InstanceSpec
from modelhost.router import Replica, Router, ServerlessPool

log = logging.getLogger(__name__)


class ServerlessScaler:
    def __init__(
        self,
        settings: Settings,
        backend: InstanceBackend,
        router: Router,
        counter: itertools.count[int],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.router = router
        self.counter = counter
        self.spawn = spawn

    def pool(
        self, endpoint: str, variant: str, weight: float, spec: InstanceSpec, config: dict[str, Any]
    ) -> ServerlessPool:
        pool = ServerlessPool(
            name=variant,
            weight=weight,
            endpoint=endpoint,
            spec=spec,
            scaler=self,
            wait_s=spec.startup_timeout_s or self.settings.startup_timeout_s,
            memory_gb=config["MemorySizeInMB"] / 1024,
            usd_per_gb_second=serverless_usd_per_gb_second(),
        )
        self.configure(pool, config)
        return pool

    def configure(self, pool: ServerlessPool, config: dict[str, Any]) -> None:
        """Apply a (new) MaxConcurrency / ProvisionedConcurrency; the next `demand` or
        `tick` starts or stops instances to match."""
        pool.max_concurrency = config["MaxConcurrency"]
        pool.warm, pool.most = instance_bounds(config, self.settings)

    def _needed(self, pool: ServerlessPool) -> int:
        busy = math.ceil(pool.in_flight / self.settings.serverless_instance_concurrency)
        return max(pool.warm, min(busy, pool.most))

    def demand(self, pool: ServerlessPool) -> None:
        if pool.retired:
            return
        missing = self._needed(pool) - len(pool.available()) - pool.starting
        for _ in range(missing):
            pool.starting += 1
            # Started for waiting requests: a cold start. Warm-ups for provisioned
            # concurrency happen with nothing in flight.
            self.spawn(self._start(pool, cold=pool.in_flight > 0))

    async def _start(self, pool: ServerlessPool, cold: bool) -> None:
        assert pool.spec is not None
        spec = numbered(self.settings, pool.spec, pool.endpoint, pool.name, next(self.counter))
        began = time.perf_counter()
        try:
            try:
                instance = await start_ready(self.backend, spec, self.settings.startup_timeout_s)
            finally:
                pool.starting -= 1
        except (OSError, ValueError, RuntimeError) as exc:
            log.error("endpoint %s: serverless instance failed to start: %s", pool.endpoint, exc)
            pool.start_failed(str(exc))
            return
        if pool.retired:
            await instance.stop()
            return
        labels = (pool.endpoint, pool.name)
        metrics.MODEL_SETUP_TIME.labels(*labels).observe(time.perf_counter() - began)
        if cold:
            metrics.SERVERLESS_COLD_STARTS.labels(*labels).inc()
        pool.add(Replica(instance, pool.name))
        metrics.INSTANCES.labels(*labels).set(len(pool.available()))

    def tick(self, pool: ServerlessPool) -> None:
        """Stop instances idle past the idle period, down to what the pool still needs;
        start any that provisioned concurrency is missing."""
        now = time.monotonic()
        surplus = len(pool.available()) - self._needed(pool)
        idle_s = self.settings.serverless_idle_s
        idle = sorted(
            (r for r in pool.available() if r.outstanding == 0 and now - r.last_used >= idle_s),
            key=lambda r: r.last_used,
        )
        for replica in idle[: max(surplus, 0)]:
            # Out of the pool before it stops: a request arriving now waits for a new one.
            replica.draining = True
            pool.replicas.remove(replica)
            self.router.forget(replica)
            log.info(
                "endpoint %s: stopping idle serverless instance %s",
                pool.endpoint,
                replica.instance.spec.instance_id,
            )
            self.spawn(replica.instance.stop())
        metrics.INSTANCES.labels(pool.endpoint, pool.name).set(len(pool.available()))
        self.demand(pool)

    def tick_all(self) -> None:
        """`tick` every serverless pool of every live deployment."""
        for deployment in self.router.deployments.values():
            for pool in deployment.variants.values():
                if isinstance(pool, ServerlessPool):
                    self.tick(pool)

    @staticmethod
    def retire(pool: ServerlessPool) -> None:
        """The deployment is being replaced or deleted: start nothing more, and let waiting
        requests know."""
        pool.retired = True
        pool.changed()
