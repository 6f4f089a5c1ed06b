"""The endpoint controller's lifecycle: one reconcile loop that moves running instances
toward each endpoint's desired state.

It reads endpoints from the state store (never from memory alone), so after a restart the
same loop brings InService endpoints back. Each endpoint has at most one operation in
flight (a deployment or a delete, see :mod:`.rollout`); a delete the API asks for cancels
a deployment still running. Every pass also replaces dead instances
(:mod:`.replacement`), ticks serverless pools and meters what runs; the health checker
(:mod:`.health`) pings every instance on its own period. Whenever capacity may have come
(a deployment published, an instance added, an operation ended) the router hears of it,
so requests waiting for an instance go on at once.

With several servers on one state store, an endpoint's instances run on the one server
that holds its lease (:mod:`modelhost.storage.ownership`): each pass claims every
endpoint, acts only on those granted, and lets go (drains and stops its instances) of one
another server turned out to hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from modelhost.capture import CaptureWriter
from modelhost.config import Settings
from modelhost.controllers.deployment import remove_partial_models
from modelhost.controllers.endpoints.components import ComponentPlacer
from modelhost.controllers.endpoints.fleet import Fleet
from modelhost.controllers.endpoints.health import HealthChecker
from modelhost.controllers.endpoints.replacement import Replacer
from modelhost.controllers.endpoints.reporting import KIND, Meter
from modelhost.controllers.endpoints.rollout import Rollout
from modelhost.controllers.endpoints.serverless import ServerlessScaler
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.instances import InstanceBackend
from modelhost.router import Router
from modelhost.storage import LoopStore, ObjectStore, Ownership, StateStore, lease

log = logging.getLogger(__name__)


class EndpointController(ReconcileLoop):
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        objects: ObjectStore,
        backend: InstanceBackend,
        router: Router,
        ownership: Ownership,
    ) -> None:
        super().__init__("endpoint reconcile", settings.health_interval_s)
        self.settings = settings
        # Awaited store calls: in a thread unless the store is a local file.
        self.store = LoopStore(store)
        self.backend = backend
        self.router = router
        self.ownership = ownership
        capture = CaptureWriter(objects, settings.capture_flush_s, settings.capture_file_bytes)
        self.fleet = Fleet(settings, self.store, objects, backend, router, capture)
        self._operations: dict[str, asyncio.Task[None]] = {}
        self.replacer = Replacer(self.fleet)
        self.health = HealthChecker(
            router,
            settings.ping_interval_s,
            settings.ping_timeout_s,
            settings.ping_misses,
            settings.model_timeout_s,
            self.replacer.condemn,
        )
        self.serverless = ServerlessScaler(
            settings, backend, router, self.fleet.counter, self.fleet.spawn
        )
        self.rollout = Rollout(self.fleet, self.serverless)
        self.components = ComponentPlacer(self.fleet, self.notify)
        self.meter = Meter(router, self.components.hosts)

    async def prepare(self) -> None:
        self.fleet.spawn(self.health.run())
        self.fleet.capture.start()
        await asyncio.to_thread(remove_partial_models, self.settings)
        try:
            await self.backend.warm()
        except (OSError, TimeoutError):
            log.exception("instance backend could not warm up; instances will start slower")

    async def step(self) -> None:
        await self.reconcile()
        await self.components.reconcile()
        self.replacer.replace_dead()
        self.serverless.tick_all()
        self.meter()

    async def shutdown(self) -> None:
        await cancel_all([*self._operations.values(), *self.fleet.tasks])
        await self.components.shutdown()
        instances = [r.instance for d in self.router.deployments.values() for r in d.replicas()]
        await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        self.router.deployments.clear()
        await self.backend.close()
        # What was answered is in the capture files before the server exits.
        await self.fleet.capture.close()

    async def reconcile(self) -> None:
        records = {r["EndpointName"]: r for r in await self.store.list(KIND)}
        mine = await self.ownership.claim(lease(KIND, name) for name in records)
        for name, record in records.items():
            if lease(KIND, name) not in mine:
                await self._let_go(name)
                continue
            running = self._operations.get(name)
            busy = running is not None and not running.done()
            status = record["EndpointStatus"]
            if status == "Deleting":
                if running is not None and busy and not running.get_name().startswith("delete:"):
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
                    busy = False
                if not busy:
                    self._start(name, "delete", self.rollout.delete(name))
            elif status != "Failed" and not busy:
                live = self.router.deployments.get(name)
                if live is None or live.generation != record["_desired"]["generation"]:
                    self._start(name, "deploy", self.rollout.deploy(name, record["_desired"]))
        for name in list(self.router.deployments):
            if name not in records and name not in self._operations:
                self._start(name, "delete", self.rollout.teardown(name))
        gone = [
            held
            for held in self.ownership.held(lease(KIND, ""))
            if held.partition(":")[2] not in records
            and held.partition(":")[2] not in self._operations
        ]
        await self.ownership.release(gone)

    async def _let_go(self, name: str) -> None:
        """Another server owns the endpoint: stop whatever this one still runs of it."""
        running = self._operations.get(name)
        if running is not None and not running.get_name().startswith("delete:"):
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            running = None
        if running is None and name in self.router.deployments:
            log.warning(
                "endpoint %s is owned by another server now; stopping its instances here", name
            )
            self._start(name, "delete", self.rollout.teardown(name))

    def _start(self, name: str, kind: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"{kind}:{name}")
        self._operations[name] = task
        task.add_done_callback(lambda t: self._finished(name, t))

    def _finished(self, name: str, task: asyncio.Task[None]) -> None:
        if self._operations.get(name) is task:
            del self._operations[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("endpoint %s: %s failed", name, task.get_name(), exc_info=task.exception())
        self._wake.set()
        # Requests waiting for this endpoint look again: it serves now, or failed, or left.
        self.router.changed()
