"""Rollout: taking an endpoint from the deployment it runs to the one its desired state
asks for, and removing it.

A new config or model is deployed blue/green: the new instances start beside the old,
the new deployment is published only once every one of them answers `/ping`, and only
then does the old one drain and stop. If the new one fails, the old one never stopped
serving and stays (a rollback, as SageMaker does); a first deployment that fails fails the
endpoint. A new weight or instance count is applied in place. Instances leave by
draining: no new requests go to them, those in flight finish (at most `DRAIN_TIMEOUT_S`),
then they stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from modelhost.capture import CapturePolicy
from modelhost.controllers.deployment import (
    StartFailed,
    instance_spec,
    model_source,
    numbered,
    prepare_model,
    start_all,
)
from modelhost.controllers.endpoints.fleet import Fleet
from modelhost.controllers.endpoints.guardrails import (
    Guard,
    RollbackFailed,
    RolledBack,
    blue_green,
    rolling,
)
from modelhost.controllers.endpoints.reporting import (
    KIND,
    count_instances,
    show_waiting,
    write_status,
)
from modelhost.controllers.endpoints.serverless import ServerlessScaler
from modelhost.controllers.instance_registry import ROUTES
from modelhost.domain.failures import fit_failure_reason
from modelhost.instances import Instance, InstanceSpec
from modelhost.router import Deployment, Replica, ServerlessPool, VariantPool
from modelhost.storage import UnsafeArchiveError

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 60.0


def fingerprint(desired: dict[str, Any]) -> bytes:
    """What needs new instances when it changes: the config and the models, not weights,
    counts or the DataCaptureConfig."""
    config = {k: v for k, v in desired["config"].items() if k != "DataCaptureConfig"}
    return orjson.dumps([config, desired["models"]], option=orjson.OPT_SORT_KEYS)


def capture_policy(name: str, desired: dict[str, Any]) -> CapturePolicy | None:
    config = desired["config"].get("DataCaptureConfig")
    return None if config is None else CapturePolicy.from_config(name, config)


class DeploymentFailed(Exception):
    """A deployment could not be made; the message is the endpoint's FailureReason."""


class Rollout:
    def __init__(self, fleet: Fleet, serverless: ServerlessScaler) -> None:
        self.fleet = fleet
        self.serverless = serverless

    async def deploy(self, name: str, desired: dict[str, Any]) -> None:
        """Bring the endpoint to `desired`, and record the outcome in its record."""
        fleet = self.fleet
        live = fleet.router.deployments.get(name)
        live_desired = fleet.desired.get(name)
        try:
            if (
                live is not None
                and live_desired is not None
                and (fingerprint(live_desired) == fingerprint(desired))
            ):
                await self._scale_in_place(name, live, desired)
            else:
                await self._guarded(name, live, desired)
        except (RolledBack, RollbackFailed) as failure:
            log.warning("endpoint %s: update rolled back: %s", name, failure)
            await write_status(
                fleet,
                name,
                "InService" if isinstance(failure, RolledBack) else "UpdateRollbackFailed",
                live_desired,
                restore=True,
                FailureReason=fit_failure_reason(str(failure)),
            )
            return
        except Exception as failure:
            # Anything that stops a deployment fails it with a reason; retrying it in a
            # loop would only repeat the failure.
            if not isinstance(failure, DeploymentFailed):
                log.exception("endpoint %s: deployment raised", name)
            reason = (
                str(failure)
                if isinstance(failure, DeploymentFailed)
                else (f"Deployment failed: {type(failure).__name__}: {failure}")
            )
            log.warning("endpoint %s: deployment failed: %s", name, reason)
            if live is None:
                await write_status(
                    fleet, name, "Failed", desired, FailureReason=fit_failure_reason(reason)
                )
            else:
                # Roll back: the deployment that serves now stays, as SageMaker does.
                await write_status(
                    fleet,
                    name,
                    "InService",
                    live_desired,
                    restore=True,
                    FailureReason=fit_failure_reason(f"Update failed: {reason}"),
                )
            return
        fleet.desired[name] = desired
        await write_status(fleet, name, "InService", desired)

    async def _guarded(self, name: str, old: Deployment | None, desired: dict[str, Any]) -> None:
        """Blue/green, within the DeploymentConfig's MaximumExecutionTimeoutInSeconds."""
        config = desired.get("deployment") if old is not None else None
        if config is None:
            await self._blue_green(name, old, desired, None)
            return
        policy = config.get("BlueGreenUpdatePolicy") or config.get("RollingUpdatePolicy") or {}
        limit = policy.get("MaximumExecutionTimeoutInSeconds")
        guard = Guard(self.fleet, name, desired)
        async with asyncio.timeout(limit) as deadline:
            try:
                await self._blue_green(name, old, desired, guard)
            except TimeoutError:
                if not deadline.expired():
                    raise
        if deadline.expired():
            raise RolledBack(
                f"The update did not complete within MaximumExecutionTimeoutInSeconds "
                f"({limit} s); traffic was rolled back to the old fleet."
            )

    async def _blue_green(
        self, name: str, old: Deployment | None, desired: dict[str, Any], guard: Guard | None
    ) -> None:
        fleet = self.fleet
        pools: dict[str, VariantPool] = {}
        started: list[Instance] = []
        batched = guard is not None and "RollingUpdatePolicy" in desired["deployment"]
        sources: dict[str, tuple[dict[str, Any], dict[str, Any], Path]] = {}

        async def start(variant_name: str, count: int) -> list[Replica]:
            variant, model, model_dir = sources[variant_name]
            specs = [
                instance_spec(fleet.settings, name, variant, model, model_dir, next(fleet.counter))
                for _ in range(count)
            ]
            instances = await self._start_instances(name, desired, variant_name, specs, started)
            return [Replica(i, variant_name) for i in instances]

        try:
            for variant in desired["config"]["ProductionVariants"]:
                capacity = desired["capacity"][variant["VariantName"]]
                if "ModelName" not in variant:
                    # Capacity for inference components, whose copies the component
                    # controller places on it: no instance of its own to start.
                    pools[variant["VariantName"]] = VariantPool(
                        name=variant["VariantName"], weight=capacity["weight"], components=True
                    )
                    continue
                model = desired["models"][variant["ModelName"]]
                model_dir = await self._model_dir(variant, model)
                try:
                    models = model_source(fleet.settings, fleet.objects, model, model_dir, variant)
                except (UnsafeArchiveError, FileNotFoundError, ValueError, OSError) as exc:
                    raise DeploymentFailed(
                        f"Variant {variant['VariantName']}: could not prepare model "
                        f"{model['ModelName']}: {exc}"
                    ) from exc
                if models is not None and (
                    "serverless" in capacity or "AsyncInferenceConfig" in desired["config"]
                ):
                    raise DeploymentFailed(
                        f"Variant {variant['VariantName']}: model {model['ModelName']} is a "
                        "multi-model container (Mode=MultiModel), which serverless and "
                        "asynchronous inference do not host; use a real-time endpoint."
                    )
                if "serverless" in capacity:
                    pools[variant["VariantName"]] = await self._serverless_pool(
                        name, desired, variant, model, model_dir, capacity, started
                    )
                    continue
                sources[variant["VariantName"]] = (variant, model, model_dir)
                pools[variant["VariantName"]] = VariantPool(
                    name=variant["VariantName"],
                    weight=capacity["weight"],
                    models=models,
                    scaled_to_zero=capacity["count"] == 0,
                )
                if not batched:  # a rolling update starts them a batch at a time
                    pools[variant["VariantName"]].replicas = await start(
                        variant["VariantName"], capacity["count"]
                    )
            shadows: dict[str, VariantPool] = {}
            for variant in desired["config"].get("ShadowProductionVariants", []):
                model = desired["models"][variant["ModelName"]]
                model_dir = await self._model_dir(variant, model)
                sources[variant["VariantName"]] = (variant, model, model_dir)
                shadows[variant["VariantName"]] = VariantPool(
                    name=variant["VariantName"],
                    weight=variant["InitialVariantWeight"],
                    replicas=await start(variant["VariantName"], variant["InitialInstanceCount"]),
                )
            new = Deployment(
                name,
                desired["generation"],
                pools,
                asynchronous="AsyncInferenceConfig" in desired["config"],
                capture=fleet.capture.sink(capture_policy(name, desired)),
                shadows=shadows,
            )
            if guard is not None and old is not None:
                if batched:
                    await rolling(guard, old, new, start, self.drain_and_stop)
                else:
                    await blue_green(guard, old, new, self.drain_and_stop)
        except BaseException:
            retire(pools.values())
            await asyncio.gather(*(i.stop() for i in started), return_exceptions=True)
            raise
        fleet.router.deployments[name] = new
        fleet.router.changed()
        count_instances(name, pools)
        if old is not None:
            retire(old.variants.values())
            await self.drain_and_stop([r for r in old.replicas() if r.instance.is_alive()])

    async def _model_dir(self, variant: dict[str, Any], model: dict[str, Any]) -> Path:
        try:
            return await prepare_model(
                self.fleet.settings,
                self.fleet.objects,
                model,
                variant.get("ModelDataDownloadTimeoutInSeconds"),
            )
        except (UnsafeArchiveError, FileNotFoundError, ValueError, OSError) as exc:
            raise DeploymentFailed(
                f"Variant {variant['VariantName']}: could not prepare model "
                f"{model['ModelName']}: {exc}"
            ) from exc

    async def _serverless_pool(
        self,
        name: str,
        desired: dict[str, Any],
        variant: dict[str, Any],
        model: dict[str, Any],
        model_dir: Path,
        capacity: dict[str, Any],
        started: list[Instance],
    ) -> ServerlessPool:
        """A serverless variant starts one instance to prove the model loads (a broken
        model fails the deployment, not every request), keeps it only if provisioned
        concurrency asks for warm instances, and otherwise scales to zero right away."""
        settings = self.fleet.settings
        spec = instance_spec(settings, name, variant, model, model_dir, 0)
        pool = self.serverless.pool(
            name, variant["VariantName"], capacity["weight"], spec, capacity["serverless"]
        )
        count = max(pool.warm, 1)
        specs = [
            numbered(settings, spec, name, pool.name, next(self.fleet.counter))
            for _ in range(count)
        ]
        instances = await self._start_instances(
            name, desired, variant["VariantName"], specs, started
        )
        if pool.warm == 0:
            await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        else:
            pool.replicas.extend(Replica(i, pool.name) for i in instances)
        return pool

    async def _start_instances(
        self,
        name: str,
        desired: dict[str, Any],
        variant: str,
        specs: list[InstanceSpec],
        started: list[Instance],
    ) -> list[Instance]:
        """Start a variant's instances; while they wait for something (an image pull),
        its VariantStatus in DescribeEndpoint says what."""
        fleet = self.fleet
        loop = asyncio.get_running_loop()
        since = round(time.time(), 3)
        live = [True]

        def show(message: str) -> None:
            if live[0]:
                fleet.spawn(
                    show_waiting(fleet, name, desired["generation"], variant, message, since)
                )

        def report(message: str) -> None:  # from the backend's worker thread
            loop.call_soon_threadsafe(show, message)

        reporting = [dataclasses.replace(spec, on_progress=report) for spec in specs]
        try:
            return await start_all(
                fleet.backend, reporting, fleet.settings.startup_timeout_s, started
            )
        except StartFailed as exc:
            raise DeploymentFailed(str(exc)) from exc
        finally:
            live[0] = False

    async def _scale_in_place(self, name: str, live: Deployment, desired: dict[str, Any]) -> None:
        fleet = self.fleet
        for variant in desired["config"]["ProductionVariants"]:
            pool = live.variants[variant["VariantName"]]
            capacity = desired["capacity"][variant["VariantName"]]
            pool.weight = capacity["weight"]
            if isinstance(pool, ServerlessPool):
                self.serverless.configure(pool, capacity["serverless"])
                self.serverless.demand(pool)
                continue
            if pool.components:  # its count is room for inference components' copies
                continue
            pool.scaled_to_zero = capacity["count"] == 0
            current = [r for r in pool.replicas if not r.draining]
            missing = capacity["count"] - len(current)
            if missing > 0:
                model = desired["models"][variant["ModelName"]]
                model_dir = await prepare_model(
                    fleet.settings,
                    fleet.objects,
                    model,
                    variant.get("ModelDataDownloadTimeoutInSeconds"),
                )
                specs = [
                    instance_spec(
                        fleet.settings, name, variant, model, model_dir, next(fleet.counter)
                    )
                    for _ in range(missing)
                ]
                started: list[Instance] = []
                try:
                    instances = await self._start_instances(
                        name, desired, variant["VariantName"], specs, started
                    )
                except BaseException:
                    await asyncio.gather(*(i.stop() for i in started), return_exceptions=True)
                    raise
                pool.replicas.extend(Replica(i, pool.name) for i in instances)
                fleet.router.changed()
            elif missing < 0:
                # Newest first, so long-lived warm instances stay.
                leaving = current[missing:]
                for replica in leaving:
                    replica.draining = True
                await self.drain_and_stop(leaving)
                pool.replicas = [r for r in pool.replicas if r not in leaving]
        live.capture = fleet.capture.sink(capture_policy(name, desired))
        live.generation = desired["generation"]
        count_instances(name, live.variants)

    async def drain_and_stop(self, replicas: list[Replica]) -> None:
        """No new requests go to a draining replica; those in flight finish first."""
        for replica in replicas:
            replica.draining = True
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await asyncio.gather(*(r.drained() for r in replicas))
        except TimeoutError:
            log.warning("drain timed out after %.0f s; stopping anyway", DRAIN_TIMEOUT_S)
        for replica in replicas:
            self.fleet.router.forget(replica)
        await asyncio.gather(*(r.instance.stop() for r in replicas), return_exceptions=True)

    async def delete(self, name: str) -> None:
        """DeleteEndpoint: take it down, then remove its record and tags, and the record of
        its instances a former owner may have left in the instance registry."""
        await self.teardown(name)
        store = self.fleet.store
        record = await store.get(KIND, name)
        if record is not None:
            await store.delete(ROUTES, name)
            await store.delete(KIND, name, arn=record["EndpointArn"])

    async def teardown(self, name: str) -> None:
        """Unpublish the endpoint's deployment and drain and stop its instances."""
        deployment = self.fleet.router.deployments.pop(name, None)
        self.fleet.desired.pop(name, None)
        if deployment is not None:
            retire(deployment.variants.values())
            await self.drain_and_stop(deployment.replicas())
            count_instances(name, {})
        await self.fleet.backend.release(name)


def retire(pools: Iterable[VariantPool]) -> None:
    """Serverless pools of a deployment that is leaving start nothing more."""
    for pool in pools:
        if isinstance(pool, ServerlessPool):
            ServerlessScaler.retire(pool)
