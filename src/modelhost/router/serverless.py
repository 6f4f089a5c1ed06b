"""A serverless variant as the router sees it: a pool that may have no instance at all.

A request is admitted if fewer than MaxConcurrency are in flight (otherwise it gets
ThrottlingException), asks the scaler for capacity, and waits, bounded, until an instance
is ready: a cold start delays a request but does not fail it. An instance stopped for
being idle leaves the pool before it stops, so a request that arrives meanwhile waits for
a new one instead of reaching a dying process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from modelhost import metrics
from modelhost.errors import ServiceUnavailable, Throttling
from modelhost.instances import InstanceSpec
from modelhost.router.pool import Replica, VariantPool


class PoolRetired(ServiceUnavailable):
    """The variant's deployment was replaced or deleted while the request waited."""


class Scaler(Protocol):
    def demand(self, pool: ServerlessPool) -> None:
        """Start instances if the pool has fewer than its requests in flight need."""
        ...


@dataclass(eq=False)
class ServerlessPool(VariantPool):
    endpoint: str = ""
    spec: InstanceSpec | None = None  # what each instance runs, numbered per start
    max_concurrency: int = 1
    warm: int = 0  # instances kept running for provisioned concurrency
    most: int = 1  # instances the variant may run at once
    wait_s: float = 120.0  # how long a request may wait for an instance
    memory_gb: float = 1.0
    usd_per_gb_second: float = 0.0
    scaler: Scaler | None = None
    in_flight: int = 0
    # The most in flight since the metrics history last took it (`take_peak`): a flush
    # every 10 s would miss a burst between two reads of `in_flight`.
    peak_in_flight: int = 0
    starting: int = 0
    billed_gb_seconds: float = 0.0  # since the pool started, for the recommender's cost
    retired: bool = False  # replaced or deleted: starts in progress are stopped on arrival
    failure: str | None = None  # why the last start failed, while none runs
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        labels = (self.endpoint, self.name)
        self._concurrency = metrics.SERVERLESS_CONCURRENCY.labels(*labels)
        self._throttles = metrics.SERVERLESS_THROTTLES.labels(*labels)
        self._gb_seconds = metrics.SERVERLESS_GB_SECONDS.labels(*labels)
        self._cost = metrics.SERVERLESS_COST.labels(*labels)

    def can_serve(self) -> bool:
        return not self.retired

    def admit(self) -> None:
        if self.in_flight >= self.max_concurrency:
            self._throttles.inc()
            raise Throttling(
                f"Endpoint {self.endpoint} variant {self.name} is at its MaxConcurrency of "
                f"{self.max_concurrency} concurrent invocations; retry with backoff."
            )
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        self._concurrency.set(self.in_flight)
        if self.scaler is not None:
            self.scaler.demand(self)

    def leave(self, billed_s: float) -> None:
        self.in_flight -= 1
        self._concurrency.set(self.in_flight)
        if billed_s > 0:
            gb_seconds = billed_s * self.memory_gb
            self.billed_gb_seconds += gb_seconds
            self._gb_seconds.inc(gb_seconds)
            self._cost.inc(gb_seconds * self.usd_per_gb_second)

    def take_peak(self) -> int:
        """The most requests in flight at once since the last call; the next span starts
        from those in flight now."""
        peak, self.peak_in_flight = self.peak_in_flight, self.in_flight
        return peak

    def changed(self) -> None:
        """Wake every request waiting for an instance (one arrived, or a start failed)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def add(self, replica: Replica) -> None:
        self.failure = None
        self.replicas.append(replica)
        self.changed()

    def start_failed(self, reason: str) -> None:
        self.failure = reason
        self.changed()

    async def ready_replica(self) -> Replica:
        """A ready instance, waiting for a cold start if there is none."""
        deadline = time.monotonic() + self.wait_s
        while True:
            replica = self.pick()
            if replica is not None:
                return replica
            if self.retired:
                raise PoolRetired(
                    f"Endpoint {self.endpoint} is being updated or deleted; try again shortly."
                )
            if self.starting == 0:
                if self.failure is not None:
                    raise ServiceUnavailable(
                        f"Endpoint {self.endpoint} could not start an instance: {self.failure}"
                    )
                if self.scaler is not None:
                    self.scaler.demand(self)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceUnavailable(
                    f"No instance of endpoint {self.endpoint} became ready within "
                    f"{self.wait_s:g} s; try again shortly."
                )
            event = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                continue
