"""Instance health: every instance is pinged on a period, whether or not it looks healthy.

The router notices an instance that refuses or drops connections, but not one that hangs:
a stopped or wedged process keeps its socket, so connections open and requests go in and
nothing comes back until the model timeout, which then blames the model. A `/ping` with a
short timeout tells them apart. An instance that misses `misses` pings in a row, or whose
requests keep timing out while its peers' do not (a model deadlocked on its worker
threads while the instance's event loop still answers `/ping`), is condemned: it is
killed and replaced (:mod:`.replacement`), and the requests it held, which it will never
answer, are retried by the router on a healthy instance. An instance taken out of
rotation for a dropped connection comes back as soon as it answers a ping.

An inference component's copies are instances too, in their component's pool: they are
pinged and condemned the same way, their peers being the component's other copies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from modelhost.router import ComponentRoute, Deployment, Replica, Router, VariantPool

#: What a pool belongs to: an endpoint's deployment, or an inference component's route.
Owner = Deployment | ComponentRoute
Condemn = Callable[[str, Owner, VariantPool, Replica, str], None]
Target = tuple[str, Owner, VariantPool, Replica]


def watched(router: Router) -> list[tuple[str, Owner, VariantPool]]:
    """Every pool whose instances are looked after: each variant's of each live
    deployment (shadow variants are not pinged), and each inference component's."""
    pools: list[tuple[str, Owner, VariantPool]] = [
        (name, deployment, pool)
        for name, deployment in list(router.deployments.items())
        for pool in deployment.variants.values()
    ]
    pools.extend((name, route, route.pool) for name, route in list(router.components.items()))
    return pools


class HealthChecker:
    def __init__(
        self,
        router: Router,
        interval_s: float,
        timeout_s: float,
        misses: int,
        model_timeout_s: float,
        condemn: Condemn,
    ) -> None:
        self.router = router
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.misses = misses
        # Request timeouts count for this long: enough for `misses` of them one after
        # another on an instance that holds one request at a time.
        self.timeout_window_s = 2 * misses * model_timeout_s
        self.condemn = condemn

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.sweep()
            await asyncio.sleep(max(self.interval_s - (loop.time() - started), 0.0))

    async def sweep(self) -> None:
        """Ping every instance at once; a hung one delays the next sweep by one timeout."""
        targets: list[Target] = [
            (name, owner, pool, replica)
            for name, owner, pool in watched(self.router)
            for replica in pool.replicas
            if not replica.draining
        ]
        if not targets:
            return
        answers = await asyncio.gather(
            *(self.router.ping(replica, self.timeout_s) for *_, replica in targets)
        )
        back = False
        for (name, owner, pool, replica), answered in zip(targets, answers, strict=True):
            # A dead process is the endpoint controller's to replace; a draining one leaves.
            if replica.draining or not replica.instance.is_alive():
                continue
            if answered:
                replica.missed_pings = 0
                if not replica.healthy:
                    replica.healthy = True
                    back = True
                continue
            replica.missed_pings += 1
            if replica.missed_pings >= self.misses:
                self.condemn(
                    name,
                    owner,
                    pool,
                    replica,
                    f"missed {replica.missed_pings} pings in a row ({self.timeout_s:g} s each)",
                )
        if back:
            self.router.changed()
        self._check_timeouts(targets)

    def _check_timeouts(self, targets: list[Target]) -> None:
        horizon = time.monotonic() - self.timeout_window_s
        for _, _, _, replica in targets:
            if replica.timeouts and replica.timeouts[0] < horizon:
                replica.timeouts = [t for t in replica.timeouts if t >= horizon]
        for name, owner, pool, replica in targets:
            if len(replica.timeouts) < self.misses or replica.draining:
                continue
            peers_answer = any(
                peer is not replica and peer.serving and not peer.timeouts for peer in pool.replicas
            )
            if peers_answer:
                peers = (
                    "copies of its component"
                    if isinstance(owner, ComponentRoute)
                    else ("instances of its variant")
                )
                self.condemn(
                    name,
                    owner,
                    pool,
                    replica,
                    f"timed out {len(replica.timeouts)} requests while the other {peers} did not",
                )
