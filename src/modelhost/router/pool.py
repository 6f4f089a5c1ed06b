"""Where requests can go: the live deployments the router chooses instances from.

The endpoint controller builds and swaps these; the router only reads them. Replicas count
their outstanding requests so the router can send each request to the least busy one, and
so a replica being removed can be drained before it is stopped.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelhost.instances import Instance, Pipeline

if TYPE_CHECKING:
    from modelhost.capture import CaptureSink
    from modelhost.router.multimodel import ModelSource


@dataclass(eq=False)
class Replica:
    instance: Instance
    variant: str
    outstanding: int = 0
    healthy: bool = True
    draining: bool = False
    last_used: float = field(default_factory=time.monotonic)  # when its last request ended
    # Health: pings missed in a row, and when its recent requests timed out (monotonic).
    missed_pings: int = 0
    timeouts: list[float] = field(default_factory=list)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.address = self.instance.address
        # A multi-container instance's containers, which the router chains or picks from.
        self.pipeline: Pipeline | None = getattr(self.instance, "pipeline", None)
        self._idle.set()

    def acquire(self) -> None:
        self.outstanding += 1
        self._idle.clear()

    def release(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.last_used = time.monotonic()
            self._idle.set()

    async def drained(self) -> None:
        await self._idle.wait()

    @property
    def serving(self) -> bool:
        """Takes new requests: healthy and not being removed."""
        return self.healthy and not self.draining


@dataclass(eq=False)
class VariantPool:
    name: str
    weight: float
    replicas: list[Replica] = field(default_factory=list)
    # A multi-model variant's models (requests with TargetModel); None: one model.
    models: ModelSource | None = None
    # The variant hosts inference components: no model of its own, so a request without
    # InferenceComponentName is refused rather than waited for (see router.components).
    components: bool = False
    # Such a variant's instance count (set by the component controller): instances that
    # run no process of their own, only their components' copies.
    hosts: int = 0
    # Its desired instance count is 0 (autoscaling scaled it in): no instance is coming,
    # so a request is refused at once rather than held for one (set by the controller).
    scaled_to_zero: bool = False

    def available(self) -> list[Replica]:
        return [r for r in self.replicas if r.serving]

    def can_serve(self) -> bool:
        """Whether requests may be sent here now (a serverless pool may start instances)."""
        return bool(self.available())

    def pick(self, exclude: Replica | None = None) -> Replica | None:
        """Least outstanding requests; ties broken at random so load spreads evenly."""
        best: list[Replica] = []
        lowest = None
        for replica in self.replicas:
            if not replica.healthy or replica.draining or replica is exclude:
                continue
            if lowest is None or replica.outstanding < lowest:
                lowest = replica.outstanding
                best = [replica]
            elif replica.outstanding == lowest:
                best.append(replica)
        if not best:
            return None
        return best[0] if len(best) == 1 else random.choice(best)


@dataclass(eq=False)
class Deployment:
    """One endpoint's routable variants at one generation of its desired state."""

    endpoint: str
    generation: int
    variants: dict[str, VariantPool]
    # The config has an AsyncInferenceConfig: only InvokeEndpointAsync may use it.
    asynchronous: bool = False
    # A guarded update in progress: the new fleet, and the share of traffic it takes
    # (see modelhost.controllers.endpoints.guardrails). Set only by the controller.
    incoming: Deployment | None = None
    incoming_share: float = 0.0
    # DataCaptureConfig: where the invoke path hands the answers it captures.
    capture: CaptureSink | None = None
    # ShadowProductionVariants: pools that get copies of requests, never answer clients.
    shadows: dict[str, VariantPool] = field(default_factory=dict)

    def route(self, target: str | None) -> Deployment:
        """The fleet a request goes to: the incoming one for its share of requests (or
        when only it has the targeted variant), this one otherwise."""
        incoming = self.incoming
        if incoming is None:
            return self
        if target is not None:
            return incoming if target not in self.variants else self
        return incoming if random.random() < self.incoming_share else self

    def choose_variant(self) -> VariantPool | None:
        pools = [p for p in self.variants.values() if p.weight > 0 and p.can_serve()]
        if not pools:
            pools = [p for p in self.variants.values() if p.can_serve()]
        if not pools:
            return None
        if len(pools) == 1:
            return pools[0]
        return random.choices(pools, weights=[max(p.weight, 1e-9) for p in pools])[0]

    def replicas(self) -> list[Replica]:
        """Every instance, shadow variants' included."""
        pools = [*self.variants.values(), *self.shadows.values()]
        return [r for pool in pools for r in pool.replicas]

    def serving(self) -> int:
        """How many instances take requests now, over all variants."""
        return sum(1 for r in self.replicas() if r.serving)
