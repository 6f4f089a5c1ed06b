"""Replacement: an instance that died, or that the health checker condemned, leaves its
pool and a new one starts in its place.

A dead instance is noticed by the controller's pass (its process is gone); the router
already stopped sending to it when its connections failed. A condemned one still runs
(it hangs, or its model deadlocked): it is taken out of rotation, killed, which fails the
requests it holds as unreachable so the router retries them elsewhere, and then replaced
like a dead one. A replacement that fails to start is tried again with a growing pause
(at most `MAX_REPLACE_BACKOFF_S`), so a model that no longer loads is not restarted every
second. Serverless instances are not replaced: the next request that needs one starts it.

An inference component's copy is looked after the same way, but replaced by the component
controller (:mod:`.components`), which knows where a copy goes and what it runs: a copy
lost here leaves its component's pool at once and the controller is woken, sees the copy
gone and places a new one; the component's CurrentCopyCount counts one fewer meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from modelhost import metrics
from modelhost.controllers.deployment import numbered, start_ready
from modelhost.controllers.endpoints.fleet import Fleet
from modelhost.controllers.endpoints.health import Owner, watched
from modelhost.controllers.endpoints.reporting import count_instances, write_status
from modelhost.router import ComponentRoute, Deployment, Replica, ServerlessPool, VariantPool

log = logging.getLogger(__name__)

MAX_REPLACE_BACKOFF_S = 60.0


class Replacer:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._failures: dict[tuple[str, str], int] = {}
        self._condemned: set[Replica] = set()

    def replace_dead(self) -> None:
        """Replace instances whose process died; the router already stopped using them.
        Instances that still run are the health checker's (:mod:`.health`)."""
        for name, owner, pool in watched(self.fleet.router):
            for replica in list(pool.replicas):
                if not replica.draining and not replica.instance.is_alive():
                    self._lost(name, owner, pool, replica)

    def _lost(self, name: str, owner: Owner, pool: VariantPool, replica: Replica) -> None:
        """A replica whose process is gone leaves its pool and, unless serverless, gets a
        replacement."""
        if replica not in pool.replicas:
            return  # already handled
        replica.healthy = False
        pool.replicas.remove(replica)
        self.fleet.router.forget(replica)
        if isinstance(owner, ComponentRoute):
            log.warning(
                "inference component %s: copy %s died (%s); replacing",
                name,
                replica.instance.spec.instance_id,
                replica.instance.failure_detail(),
            )
            metrics.INSTANCE_REPLACEMENTS.labels(owner.endpoint, owner.variant).inc()
            owner.wake()  # the component controller places the new copy
            return
        if isinstance(pool, ServerlessPool):
            # Nothing to replace: the next request that needs one starts it.
            log.warning(
                "endpoint %s: serverless instance %s died (%s)",
                name,
                replica.instance.spec.instance_id,
                replica.instance.failure_detail(),
            )
            return
        log.warning(
            "endpoint %s: instance %s died (%s); replacing",
            name,
            replica.instance.spec.instance_id,
            replica.instance.failure_detail(),
        )
        metrics.INSTANCE_REPLACEMENTS.labels(name, pool.name).inc()
        assert isinstance(owner, Deployment)
        self.fleet.spawn(self._replace(name, owner, pool, replica))

    def condemn(
        self, name: str, owner: Owner, pool: VariantPool, replica: Replica, why: str
    ) -> None:
        """The health checker gave up on a running instance: out of rotation now, killed
        (which fails the requests it holds as unreachable, so the router retries them on
        a healthy instance) and replaced."""
        if replica in self._condemned or replica not in pool.replicas:
            return
        log.warning(
            "%s %s: instance %s %s; killing and replacing it",
            "inference component" if isinstance(owner, ComponentRoute) else "endpoint",
            name,
            replica.instance.spec.instance_id,
            why,
        )
        # Draining: no new requests, and the health checker leaves it alone (a model that
        # deadlocked still answers /ping, which would put it back in rotation).
        replica.draining = True
        self._condemned.add(replica)

        async def kill() -> None:
            try:
                await replica.instance.kill()
            finally:
                self._condemned.discard(replica)
            # Dead now, like any other: replaced once, and again if its replacement fails.
            replica.draining = False
            self._lost(name, owner, pool, replica)

        self.fleet.spawn(kill())

    async def _replace(
        self, name: str, deployment: Deployment, pool: VariantPool, dead: Replica
    ) -> None:
        fleet = self.fleet
        spec = numbered(fleet.settings, dead.instance.spec, name, pool.name, next(fleet.counter))
        key = (name, pool.name)
        try:
            instance = await start_ready(fleet.backend, spec, fleet.settings.startup_timeout_s)
        except (OSError, ValueError, RuntimeError) as exc:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(2.0**failures, MAX_REPLACE_BACKOFF_S)
            log.error(
                "endpoint %s: replacement instance failed (%s); next try in %.0f s",
                name,
                exc,
                delay,
            )
            # Put the dead replica back later, so the health check tries again without
            # restarting a broken model every second.
            await asyncio.sleep(delay)
            pool.replicas.append(dead)
            return
        self._failures.pop(key, None)
        if fleet.router.deployments.get(name) is not deployment:
            await instance.stop()
            return
        pool.replicas.append(Replica(instance, pool.name))
        fleet.router.changed()
        count_instances(name, deployment.variants)
        await write_status(fleet, name, None, fleet.desired.get(name))
