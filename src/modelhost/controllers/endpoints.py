"""The endpoint controller: moves running instances toward each endpoint's desired state.

It reads endpoints from the state store (never from memory alone), so after a restart the
same loop brings InService endpoints back. Each endpoint has at most one operation in
flight; a new config is deployed blue/green (the old deployment keeps serving until the
new one is ready, then drains), a new weight or count is applied in place, and an instance
that dies, or hangs (see :mod:`.health`), is replaced while its in-flight requests are
retried elsewhere by the router. Whenever capacity may have come (a deployment published,
an instance added, an operation ended) the router hears of it, so requests waiting for an
instance go on at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from modelhost import metrics
from modelhost.config import Settings
from modelhost.controllers.deployment import (
    StartFailed,
    charge,
    instance_spec,
    numbered,
    prepare_model,
    remove_partial_models,
    start_all,
    start_ready,
)
from modelhost.controllers.health import HealthChecker
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.controllers.serverless import ServerlessScaler
from modelhost.domain import kinds
from modelhost.domain.endpoints import deployed_fields
from modelhost.domain.failures import fit_failure_reason
from modelhost.instances import Instance, InstanceBackend, InstanceSpec
from modelhost.router import Deployment, Replica, Router, ServerlessPool, VariantPool
from modelhost.storage import LoopStore, ObjectStore, StateStore, UnsafeArchiveError

log = logging.getLogger(__name__)

KIND = kinds.ENDPOINT
_DRAIN_TIMEOUT_S = 60.0
_MAX_REPLACE_BACKOFF_S = 60.0


def _fingerprint(desired: dict[str, Any]) -> bytes:
    """What needs new instances when it changes: the config and the models, not weights
    or counts."""
    return orjson.dumps([desired["config"], desired["models"]], option=orjson.OPT_SORT_KEYS)


class DeploymentFailed(Exception):
    pass


class EndpointController(ReconcileLoop):
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        objects: ObjectStore,
        backend: InstanceBackend,
        router: Router,
    ) -> None:
        super().__init__("endpoint reconcile", settings.health_interval_s)
        self.settings = settings
        self.store = LoopStore(store)
        self.objects = objects
        self.backend = backend
        self.router = router
        self._operations: dict[str, asyncio.Task[None]] = {}
        self._replacements: set[asyncio.Task[None]] = set()
        self._desired: dict[str, dict[str, Any]] = {}  # live deployment's desired state
        self._counter = itertools.count(1)
        self._metered_at = time.monotonic()
        self._replace_failures: dict[tuple[str, str], int] = {}
        self._condemned: set[Replica] = set()
        self.health = HealthChecker(router, settings.ping_interval_s, settings.ping_timeout_s,
                                    settings.ping_misses, settings.model_timeout_s,
                                    self._condemn)
        self.serverless = ServerlessScaler(settings, backend, router, self._counter,
                                           self._spawn)

    async def prepare(self) -> None:
        self._spawn(self.health.run())
        await asyncio.to_thread(remove_partial_models, self.settings)
        try:
            await self.backend.warm()
        except (OSError, TimeoutError):
            log.exception("instance backend could not warm up; instances will start slower")

    async def step(self) -> None:
        await self.reconcile()
        self.check_health()
        self.meter()

    async def shutdown(self) -> None:
        await cancel_all([*self._operations.values(), *self._replacements])
        instances = [r.instance for d in self.router.deployments.values() for r in d.replicas()]
        await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        self.router.deployments.clear()
        await self.backend.close()

    # --- reconcile -------------------------------------------------------------------

    async def reconcile(self) -> None:
        records = {r["EndpointName"]: r for r in await self.store.list(KIND)}
        for name, record in records.items():
            running = self._operations.get(name)
            busy = running is not None and not running.done()
            status = record["EndpointStatus"]
            if status == "Deleting":
                if running is not None and busy and not running.get_name().startswith(
                        "delete:"):
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
                    busy = False
                if not busy:
                    self._start(name, "delete", self._delete(name))
            elif status != "Failed" and not busy:
                live = self.router.deployments.get(name)
                if live is None or live.generation != record["_desired"]["generation"]:
                    self._start(name, "deploy", self._deploy(name, record["_desired"]))
        for name in list(self.router.deployments):
            if name not in records and name not in self._operations:
                self._start(name, "delete", self._teardown(name))

    def _start(self, name: str, kind: str, work: Any) -> None:
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

    # --- operations ------------------------------------------------------------------

    async def _deploy(self, name: str, desired: dict[str, Any]) -> None:
        live = self.router.deployments.get(name)
        live_desired = self._desired.get(name)
        try:
            if live is not None and live_desired is not None and (
                _fingerprint(live_desired) == _fingerprint(desired)
            ):
                await self._scale_in_place(name, live, desired)
            else:
                await self._blue_green(name, live, desired)
        except Exception as failure:
            # Anything that stops a deployment fails it with a reason; retrying it in a
            # loop would only repeat the failure.
            if not isinstance(failure, DeploymentFailed):
                log.exception("endpoint %s: deployment raised", name)
            reason = str(failure) if isinstance(failure, DeploymentFailed) else (
                f"Deployment failed: {type(failure).__name__}: {failure}")
            log.warning("endpoint %s: deployment failed: %s", name, reason)
            if live is None:
                await self._write_status(name, "Failed", desired,
                                   FailureReason=fit_failure_reason(reason))
            else:
                # Roll back: the deployment that serves now stays, as SageMaker does.
                await self._write_status(name, "InService", live_desired, restore=True,
                                   FailureReason=fit_failure_reason(f"Update failed: {reason}"))
            return
        self._desired[name] = desired
        await self._write_status(name, "InService", desired)

    async def _blue_green(
        self, name: str, old: Deployment | None, desired: dict[str, Any]
    ) -> None:
        pools: dict[str, VariantPool] = {}
        started: list[Instance] = []
        try:
            for variant in desired["config"]["ProductionVariants"]:
                capacity = desired["capacity"][variant["VariantName"]]
                model = desired["models"][variant["ModelName"]]
                try:
                    model_dir = await prepare_model(self.settings, self.objects, model)
                except (UnsafeArchiveError, FileNotFoundError, ValueError, OSError) as exc:
                    raise DeploymentFailed(
                        f"Variant {variant['VariantName']}: could not prepare model "
                        f"{model['ModelName']}: {exc}"
                    ) from exc
                if "serverless" in capacity:
                    pools[variant["VariantName"]] = await self._serverless_pool(
                        name, variant, model, model_dir, capacity, started)
                    continue
                specs = [
                    instance_spec(self.settings, name, variant, model, model_dir,
                                  next(self._counter))
                    for _ in range(capacity["count"])
                ]
                instances = await self._start_instances(specs, started)
                pools[variant["VariantName"]] = VariantPool(
                    name=variant["VariantName"], weight=capacity["weight"],
                    replicas=[Replica(i, variant["VariantName"]) for i in instances],
                )
        except BaseException:
            self._retire(pools.values())
            await asyncio.gather(*(i.stop() for i in started), return_exceptions=True)
            raise
        self.router.deployments[name] = Deployment(
            name, desired["generation"], pools,
            asynchronous="AsyncInferenceConfig" in desired["config"])
        self.router.changed()
        self._count_instances(name, pools)
        if old is not None:
            self._retire(old.variants.values())
            await self._drain_and_stop(old.replicas())

    async def _serverless_pool(
        self, name: str, variant: dict[str, Any], model: dict[str, Any], model_dir: Path,
        capacity: dict[str, Any], started: list[Instance],
    ) -> ServerlessPool:
        """A serverless variant starts one instance to prove the model loads (a broken
        model fails the deployment, not every request), keeps it only if provisioned
        concurrency asks for warm instances, and otherwise scales to zero right away."""
        spec = instance_spec(self.settings, name, variant, model, model_dir, 0)
        pool = self.serverless.pool(name, variant["VariantName"], capacity["weight"], spec,
                                    capacity["serverless"])
        count = max(pool.warm, 1)
        specs = [numbered(self.settings, spec, name, pool.name, next(self._counter))
                 for _ in range(count)]
        instances = await self._start_instances(specs, started)
        if pool.warm == 0:
            await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        else:
            pool.replicas.extend(Replica(i, pool.name) for i in instances)
        return pool

    @staticmethod
    def _retire(pools: Iterable[VariantPool]) -> None:
        for pool in pools:
            if isinstance(pool, ServerlessPool):
                ServerlessScaler.retire(pool)

    async def _start_instances(
        self, specs: list[InstanceSpec], started: list[Instance]
    ) -> list[Instance]:
        try:
            return await start_all(self.backend, specs, self.settings.startup_timeout_s,
                                   started)
        except StartFailed as exc:
            raise DeploymentFailed(str(exc)) from exc

    async def _scale_in_place(
        self, name: str, live: Deployment, desired: dict[str, Any]
    ) -> None:
        for variant in desired["config"]["ProductionVariants"]:
            pool = live.variants[variant["VariantName"]]
            capacity = desired["capacity"][variant["VariantName"]]
            pool.weight = capacity["weight"]
            if isinstance(pool, ServerlessPool):
                self.serverless.configure(pool, capacity["serverless"])
                self.serverless.demand(pool)
                continue
            current = [r for r in pool.replicas if not r.draining]
            missing = capacity["count"] - len(current)
            if missing > 0:
                model = desired["models"][variant["ModelName"]]
                model_dir = await prepare_model(self.settings, self.objects, model)
                specs = [
                    instance_spec(self.settings, name, variant, model, model_dir,
                                  next(self._counter))
                    for _ in range(missing)
                ]
                started: list[Instance] = []
                try:
                    instances = await self._start_instances(specs, started)
                except BaseException:
                    await asyncio.gather(*(i.stop() for i in started), return_exceptions=True)
                    raise
                pool.replicas.extend(Replica(i, pool.name) for i in instances)
                self.router.changed()
            elif missing < 0:
                # Newest first, so long-lived warm instances stay.
                leaving = current[missing:]
                for replica in leaving:
                    replica.draining = True
                await self._drain_and_stop(leaving)
                pool.replicas = [r for r in pool.replicas if r not in leaving]
        live.generation = desired["generation"]
        self._count_instances(name, live.variants)

    async def _drain_and_stop(self, replicas: list[Replica]) -> None:
        """No new requests go to a draining replica; those in flight finish first."""
        for replica in replicas:
            replica.draining = True
        try:
            await asyncio.wait_for(
                asyncio.gather(*(r.drained() for r in replicas)), _DRAIN_TIMEOUT_S
            )
        except TimeoutError:
            log.warning("drain timed out after %.0f s; stopping anyway", _DRAIN_TIMEOUT_S)
        for replica in replicas:
            self.router.forget(replica)
        await asyncio.gather(*(r.instance.stop() for r in replicas), return_exceptions=True)

    async def _delete(self, name: str) -> None:
        await self._teardown(name)
        record = await self.store.get(KIND, name)
        if record is not None:
            await self.store.delete(KIND, name)
            await self.store.delete_tags(record["EndpointArn"])

    async def _teardown(self, name: str) -> None:
        deployment = self.router.deployments.pop(name, None)
        self._desired.pop(name, None)
        if deployment is not None:
            self._retire(deployment.variants.values())
            await self._drain_and_stop(deployment.replicas())
            self._count_instances(name, {})

    # --- health ----------------------------------------------------------------------

    def check_health(self) -> None:
        """Replace instances whose process died; the router already stopped using them.
        Instances that still run are the health checker's (:mod:`.health`)."""
        for name, deployment in self.router.deployments.items():
            for pool in deployment.variants.values():
                for replica in list(pool.replicas):
                    if not replica.draining and not replica.instance.is_alive():
                        self._lost(name, deployment, pool, replica)
                if isinstance(pool, ServerlessPool):
                    self.serverless.tick(pool)

    def _lost(self, name: str, deployment: Deployment, pool: VariantPool,
              replica: Replica) -> None:
        """A replica whose process is gone leaves its pool and, unless serverless, gets a
        replacement."""
        if replica not in pool.replicas:
            return  # already handled
        replica.healthy = False
        pool.replicas.remove(replica)
        self.router.forget(replica)
        if isinstance(pool, ServerlessPool):
            # Nothing to replace: the next request that needs one starts it.
            log.warning("endpoint %s: serverless instance %s died (%s)", name,
                        replica.instance.spec.instance_id, replica.instance.failure_detail())
            return
        log.warning("endpoint %s: instance %s died (%s); replacing", name,
                    replica.instance.spec.instance_id, replica.instance.failure_detail())
        metrics.INSTANCE_REPLACEMENTS.labels(name, pool.name).inc()
        self._spawn(self._replace(name, deployment, pool, replica))

    def _condemn(self, name: str, deployment: Deployment, pool: VariantPool,
                 replica: Replica, why: str) -> None:
        """The health checker gave up on a running instance: out of rotation now, killed
        (which fails the requests it holds as unreachable, so the router retries them on
        a healthy instance) and replaced."""
        if replica in self._condemned or replica not in pool.replicas:
            return
        log.warning("endpoint %s: instance %s %s; killing and replacing it", name,
                    replica.instance.spec.instance_id, why)
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
            self._lost(name, deployment, pool, replica)

        self._spawn(kill())

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._replacements.add(task)
        task.add_done_callback(self._replacements.discard)

    async def _replace(
        self, name: str, deployment: Deployment, pool: VariantPool, dead: Replica
    ) -> None:
        spec = numbered(self.settings, dead.instance.spec, name, pool.name,
                        next(self._counter))
        key = (name, pool.name)
        try:
            instance = await start_ready(self.backend, spec, self.settings.startup_timeout_s)
        except (OSError, ValueError, RuntimeError) as exc:
            failures = self._replace_failures[key] = self._replace_failures.get(key, 0) + 1
            delay = min(2.0**failures, _MAX_REPLACE_BACKOFF_S)
            log.error("endpoint %s: replacement instance failed (%s); next try in %.0f s",
                      name, exc, delay)
            # Put the dead replica back later, so the health check tries again without
            # restarting a broken model every second.
            await asyncio.sleep(delay)
            pool.replicas.append(dead)
            return
        self._replace_failures.pop(key, None)
        if self.router.deployments.get(name) is not deployment:
            await instance.stop()
            return
        pool.replicas.append(Replica(instance, pool.name))
        self.router.changed()
        self._count_instances(name, deployment.variants)
        await self._write_status(name, None, self._desired.get(name))

    # --- reporting -------------------------------------------------------------------

    def meter(self) -> None:
        """Add the time since the last call to every running instance's meter."""
        now = time.monotonic()
        elapsed, self._metered_at = now - self._metered_at, now
        for name, deployment in self.router.deployments.items():
            for replica in deployment.replicas():
                # Serverless instances are billed per request (see ServerlessPool.leave).
                if not isinstance(deployment.variants[replica.variant], ServerlessPool):
                    charge(name, replica.variant, replica.instance, elapsed)

    def _count_instances(self, name: str, pools: dict[str, VariantPool]) -> None:
        for pool in pools.values():
            metrics.INSTANCES.labels(name, pool.name).set(len(pool.available()))

    async def _write_status(
        self,
        name: str,
        status: str | None,
        desired: dict[str, Any] | None,
        *,
        restore: bool = False,
        **fields: Any,
    ) -> None:
        """Record what the endpoint runs now. Never overwrites a delete the API asked for,
        nor a newer desired state that arrived while this operation ran."""
        deployment = self.router.deployments.get(name)
        # Read here, on the loop: `change` may run in a worker thread.
        current = {} if deployment is None else {
            pool.name: (pool.weight, len(pool.available()))
            for pool in deployment.variants.values()
        }

        def change(record: dict[str, Any]) -> dict[str, Any] | None:
            if record["EndpointStatus"] == "Deleting":
                return None
            if desired is not None and not restore and (
                record["_desired"]["generation"] != desired["generation"]
            ):
                return None
            if status is not None:
                record["EndpointStatus"] = status
                record["LastModifiedTime"] = round(time.time(), 3)
            if restore and desired is not None:
                record["_desired"] = {**desired, "generation": record["_desired"]["generation"]}
                if deployment is not None:
                    deployment.generation = record["_desired"]["generation"]
            if status == "InService" and desired is not None:
                record["EndpointConfigName"] = desired["config"]["EndpointConfigName"]
                record.pop("PendingDeploymentSummary", None)
                if not fields:
                    record.pop("FailureReason", None)
            source = record["_desired"] if restore or desired is None else desired
            record.pop("AsyncInferenceConfig", None)  # the new config may have none
            record.update(deployed_fields(source, current))
            record.update(fields)
            return record

        await self.store.modify(KIND, name, change)
