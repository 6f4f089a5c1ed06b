"""Inference components' copies: placed on the instances of the model-less variant that
hosts them, started, published to the router, and reported in each component's record.

A variant that hosts components has `InitialInstanceCount` instances of its type; each is
room (cores, memory, accelerators, from the instance catalog) that copies take their
`ComputeResourceRequirements` from, first fit, oldest component first. A copy runs as an
instance of its own (a model server process or container) limited to its share, pinged
and, when it dies or hangs, taken out of the pool like any instance (`health`,
`replacement`); this controller then places a new copy in its place. A copy
that fits nowhere stays pending and the component's FailureReason says why; it is placed
as soon as room frees up (another component scaled in, more instances). A request that
finds a component at zero copies with a scalable target asks for a copy (scale out from
zero), and waits for it; the target's scaling policies move the count from there
(`controllers/autoscaling.py`).

With several servers on one state store, only the server that runs a component's endpoint
(holds its lease) places its copies; the instance registry publishes their addresses with
the endpoint's instances, so any other server routes to them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from modelhost.catalog import InstanceType, get_instance_type
from modelhost.controllers.deployment import instance_spec, prepare_model, start_ready
from modelhost.controllers.endpoints.fleet import Fleet
from modelhost.controllers.endpoints.reporting import count_instances
from modelhost.domain import kinds
from modelhost.domain.failures import fit_failure_reason
from modelhost.domain.inference_components import (
    Needs,
    batch_size,
    first_fit,
    fits,
    room,
    take,
)
from modelhost.domain.scaling import component_resource
from modelhost.router import ComponentRoute, Replica, VariantPool

log = logging.getLogger(__name__)

KIND = kinds.INFERENCE_COMPONENT
Record = dict[str, Any]


@dataclass(eq=False)
class Copy:
    component: str
    slot: int
    needs: Needs
    generation: int
    replica: Replica | None = None  # None while it starts
    ready_at: float = 0.0  # monotonic time it was published
    # Its start, cancelled (the instance stopped) if the copy goes before it is up.
    starting: asyncio.Task[None] | None = None


def _serving(copy: Copy) -> bool:
    return copy.replica is not None and copy.replica.serving


def _idle(copy: Copy) -> bool:
    return not _serving(copy)


class ComponentPlacer:
    def __init__(self, fleet: Fleet, wake: Any) -> None:
        self.fleet = fleet
        self.wake = wake
        self.copies: dict[str, list[Copy]] = {}
        # (generation, desired copy count) whose copies failed to start: not retried
        # until the component changes.
        self.failed: dict[str, tuple[int, int, str]] = {}
        # Variants that host components, on endpoints this server runs: (endpoint,
        # variant) -> (instance type, instance count), as of the last pass.
        self._hosts: dict[tuple[str, str], tuple[InstanceType, int]] = {}

    async def reconcile(self) -> None:
        store = self.fleet.store
        records = sorted(await store.list(KIND), key=lambda r: r["CreationTime"])
        endpoints = {e["EndpointName"]: e for e in await store.list(kinds.ENDPOINT)}
        targets = {t["ResourceId"]: t for t in await store.list(kinds.SCALABLE_TARGET)}
        names = {r["InferenceComponentName"] for r in records}
        for name in [n for n in self.copies if n not in names]:
            await self._stop(name, list(self.copies.get(name, [])))
            self.fleet.router.components.pop(name, None)
        for record in records:
            try:
                await self._reconcile_one(record, endpoints, targets)
            except Exception:
                log.exception(
                    "inference component %s: reconcile failed", record["InferenceComponentName"]
                )
        for name, endpoint in endpoints.items():
            if endpoint["EndpointStatus"] == "InService" and name in self.fleet.router.deployments:
                await self._scale_in(endpoint)
        self._hosts = {
            (name, variant["VariantName"]): (kind, count)
            for name, endpoint in endpoints.items()
            if name in self.fleet.router.deployments
            and endpoint["EndpointStatus"] in ("InService", "Updating")
            for variant in endpoint["_desired"]["config"]["ProductionVariants"]
            if "ModelName" not in variant
            and (kind := get_instance_type(variant.get("InstanceType", ""))) is not None
            and (
                count := endpoint["_desired"]["capacity"]
                .get(variant["VariantName"], {})
                .get("count", 0)
            )
        }
        # The router's view of them: the instance gauge, the variant's metrics.
        for (name, variant), (_, count) in self._hosts.items():
            pool = self.fleet.router.deployments[name].variants.get(variant)
            if pool is not None and pool.hosts != count:
                pool.hosts = count
                count_instances(name, {variant: pool})

    def hosts(self) -> list[tuple[str, str, InstanceType, int]]:
        """The instances of the variants that host components: what is billed for them."""
        return [(name, variant, *hosted) for (name, variant), hosted in self._hosts.items()]

    async def _scale_in(self, endpoint: Record) -> None:
        """ManagedInstanceScaling: a variant's last instances that hold no copy go, down
        to its MinInstanceCount (copies are placed first fit, so the last ones empty
        first; none is moved)."""
        name = endpoint["EndpointName"]
        for variant in endpoint["_desired"]["config"]["ProductionVariants"]:
            managed = _managed(variant)
            if "ModelName" in variant or managed is None:
                continue
            variant_name = variant["VariantName"]
            slots = endpoint["_desired"]["capacity"].get(variant_name, {}).get("count", 0)
            used = [
                copy.slot
                for component, copies in self.copies.items()
                if (route := self.fleet.router.components.get(component)) is not None
                and route.endpoint == name
                and route.variant == variant_name
                for copy in copies
            ]
            keep = max(int(managed.get("MinInstanceCount", 0)), max(used, default=-1) + 1)
            if keep < slots:
                await self._resize(endpoint, variant_name, keep)

    async def _resize(self, endpoint: Record, variant: str, count: int) -> int:
        """Set a component-hosting variant's instance count (ManagedInstanceScaling), in
        the store and in `endpoint`; returns the count."""
        name = endpoint["EndpointName"]

        def change(current: Record) -> Record | None:
            if current["EndpointStatus"] in ("Deleting", "Failed"):
                return None
            current["_desired"]["capacity"][variant]["count"] = count
            for summary in current.get("ProductionVariants", []):
                if summary["VariantName"] == variant:
                    summary["CurrentInstanceCount"] = count
                    summary["DesiredInstanceCount"] = count
            current["LastModifiedTime"] = round(time.time(), 3)
            return current

        await self.fleet.store.modify(kinds.ENDPOINT, name, change)
        endpoint["_desired"]["capacity"][variant]["count"] = count
        log.info("endpoint %s variant %s: %d instances for its components", name, variant, count)
        return count

    async def _reconcile_one(
        self, record: Record, endpoints: dict[str, Record], targets: dict[str, Record]
    ) -> None:
        name = record["InferenceComponentName"]
        copies = self.copies.setdefault(name, [])
        router = self.fleet.router
        if record["InferenceComponentStatus"] == "Deleting":
            router.components.pop(name, None)
            await self._stop(name, list(copies))
            self.copies.pop(name, None)
            await self.fleet.store.delete(KIND, name)
            return
        endpoint = endpoints.get(record["EndpointName"])
        if endpoint is None or endpoint["EndpointStatus"] in ("Failed", "Deleting"):
            await self._stop(name, list(copies))
            router.components.pop(name, None)
            await self._report(record, "Failed", 0, "The endpoint that hosts it is gone or failed.")
            return
        if record["EndpointName"] not in router.deployments:
            # Another server sharing the state store runs the endpoint (or none does yet):
            # its owner places, reports and publishes the copies (`InstanceRegistry`).
            await self._stop(name, list(copies))
            router.components.pop(name, None)
            return
        variant = record["VariantName"]
        route = router.components.get(name)
        if route is None:
            route = ComponentRoute(
                name, record["EndpointName"], variant, VariantPool(variant, 1.0), wake=self.wake
            )
            router.components[name] = route
        desired = record["RuntimeConfig"]["DesiredCopyCount"]
        target = targets.get(component_resource(name))
        route.scalable_from_zero = target is not None and target["MaxCapacity"] >= 1
        if route.demanded and desired == 0 and route.scalable_from_zero and target is not None:
            desired = await self._scale_from_zero(record, target)
        route.demanded = False
        route.desired = desired
        # Copies that died, or that their health check condemned, are out of the pool
        # (`replacement.Replacer`): they are placed again below.
        lost = [c for c in copies if c.replica and c.replica not in route.pool.replicas]
        if lost:
            await self._stop(name, lost)
        if endpoint["EndpointStatus"] not in ("InService", "Updating"):
            return  # its instances are not there yet
        generation = record["_generation"]
        failed = self.failed.get(name)
        if failed is not None and failed[0] == generation and "_previous" in record:
            await self._roll_back(record, f"a copy of the new specification failed: {failed[2]}")
            return
        if failed is not None and failed[:2] == (generation, desired):
            await self._report(record, "Failed", self._ready(name, generation), failed[2])
            return
        self.failed.pop(name, None)
        trouble = await self._update_trouble(record)
        if trouble:
            await self._roll_back(record, trouble)
            return
        instance_type = get_instance_type(_variant(endpoint, variant).get("InstanceType", ""))
        slots = endpoint["_desired"]["capacity"].get(variant, {}).get("count", 0)
        live = [c for c in copies if c.slot < slots]
        # Serving copies first, so those beyond the count are the ones still starting.
        current = sorted((c for c in live if c.generation == generation), key=_idle)
        # Copies on instances that left, or beyond the count, go now.
        leaving = [c for c in copies if c.slot >= slots] + current[desired:]
        current = current[:desired]
        # Copies of an older Specification: an update rolls out. They serve until copies
        # of the new one are ready (and baked) to take their place.
        old = sorted((c for c in live if c.generation != generation), key=_serving)
        rolling = bool(old)
        policy = record.get("_deployment", {}).get("RollingUpdatePolicy", {})
        if rolling:
            batch = batch_size(policy.get("MaximumBatchSize"), desired)
        elif record.get("_rolling_back"):
            batch = batch_size(policy.get("RollbackMaximumBatchSize"), desired)
        else:
            batch = None
        bake_s = float(policy.get("WaitIntervalInSeconds", 0)) if rolling else 0.0
        now = time.monotonic()
        baked = [c for c in current if _serving(c) and now >= c.ready_at + bake_s]
        in_flight = [c for c in current if c not in baked]
        # Each baked new copy takes an old one's place.
        retire = old[: max(len(old) - max(desired - len(baked), 0), 0)]
        staying = [c for c in old if c not in retire]
        needs = Needs.of(record["Specification"])
        missing = desired - len(current)
        if batch is not None:
            missing = min(missing, max(batch - len(in_flight), 0))
        pending = ""
        if instance_type is not None and missing > 0:
            managed = _managed(_variant(endpoint, variant))
            most = None if managed is None else int(managed["MaxInstanceCount"])
            serving = len(baked) + sum(1 for c in staying if _serving(c))
            placed = 0
            while placed < missing:
                free = self._free(
                    record["EndpointName"], variant, instance_type, slots, leaving + retire
                )
                slot = first_fit(needs, free)
                if (
                    slot is None
                    and most is not None
                    and slots < most
                    and fits(needs, room(instance_type))
                ):
                    # ManagedInstanceScaling: one more instance, for this copy.
                    slots = await self._resize(endpoint, variant, slots + 1)
                    continue
                if slot is None and staying and not in_flight:
                    # No spare room: an old copy gives up its own, one at a time, while
                    # another copy serves (the last one has to, if nothing else can).
                    victim = staying[0]
                    if _serving(victim) and serving <= 1 and placed:
                        break  # the copies just placed serve first
                    staying.remove(victim)
                    retire.append(victim)
                    serving -= _serving(victim)
                    continue
                if slot is None:
                    if not rolling or not in_flight:
                        limit = ", its ManagedInstanceScaling maximum" if most is not None else ""
                        pending = (
                            f"{missing - placed} of {desired} copies are pending: a copy needs "
                            f"{needs.describe()}, and no instance of variant {variant} "
                            f"({slots} x {instance_type.name}{limit}) has that much left."
                        )
                    break
                placed += 1
                copy = Copy(name, slot, needs, generation)
                copies.append(copy)
                copy.starting = self.fleet.spawn(self._start(record, copy, instance_type, endpoint))
        self._retire(leaving + retire)
        if bake_s:
            waiting = [c.ready_at + bake_s - now for c in in_flight if _serving(c)]
            if waiting:
                asyncio.get_running_loop().call_later(min(waiting), self.wake)
        ready = self._ready(name, generation)
        status = record["InferenceComponentStatus"]
        settled = ready == desired and not staying and not pending
        if settled:
            status = "InService"
        elif status == "Failed":
            status = "Updating"
        await self._report(
            record, status, ready, pending or record.get("_rolled_back", ""), settled
        )

    def _ready(self, name: str, generation: int) -> int:
        return sum(
            1
            for c in self.copies.get(name, [])
            if c.replica is not None and c.generation == generation and c.replica.serving
        )

    def _free(
        self,
        endpoint: str,
        variant: str,
        instance_type: InstanceType,
        slots: int,
        exclude: list[Copy],
    ) -> list[Needs]:
        """Room left on each instance of the variant, after every component's copies
        (those about to leave excluded)."""
        free = [room(instance_type) for _ in range(slots)]
        for name, copies in self.copies.items():
            route = self.fleet.router.components.get(name)
            if route is None or route.endpoint != endpoint or route.variant != variant:
                continue
            for copy in copies:
                if copy not in exclude and copy.slot < slots:
                    free[copy.slot] = take(free[copy.slot], copy.needs)
        return free

    async def _start(
        self, record: Record, copy: Copy, instance_type: InstanceType, endpoint: Record
    ) -> None:
        fleet = self.fleet
        name = record["InferenceComponentName"]
        specification = record["Specification"]
        startup = specification.get("StartupParameters", {})
        try:
            model = await self._model(record)
            model_dir = await prepare_model(
                fleet.settings,
                fleet.objects,
                model,
                startup.get("ModelDataDownloadTimeoutInSeconds"),
            )
            variant = {
                "VariantName": record["VariantName"],
                "InstanceType": instance_type.name,
                "ContainerStartupHealthCheckTimeoutInSeconds": startup.get(
                    "ContainerStartupHealthCheckTimeoutInSeconds"
                ),
            }
            number = next(fleet.counter)
            spec = instance_spec(
                fleet.settings, record["EndpointName"], variant, model, model_dir, number
            )
            spec = dataclasses.replace(
                spec,
                instance_id=f"{record['EndpointName']}-{name}-{number}",
                instance_type=_share(instance_type, specification),
                log_path=fleet.settings.logs_dir / record["EndpointName"] / f"{name}-{number}.log",
            )
            instance = await start_ready(fleet.backend, spec, fleet.settings.startup_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("inference component %s: a copy failed to start: %s", name, exc)
            copy.starting = None
            self._forget(copy)
            self.failed[name] = (
                record["_generation"],
                record["RuntimeConfig"]["DesiredCopyCount"],
                fit_failure_reason(f"A copy failed to start: {exc}"),
            )
            self.wake()
            return
        if copy not in self.copies.get(name, []):  # removed while it started
            await instance.stop()
            return
        copy.replica = Replica(instance, record["VariantName"])
        copy.ready_at = time.monotonic()
        route = fleet.router.components.get(name)
        if route is not None:
            route.pool.replicas.append(copy.replica)
        fleet.router.changed()
        self.wake()

    async def _model(self, record: Record) -> Record:
        specification = record["Specification"]
        if "ModelName" in specification:
            model = await self.fleet.store.get(kinds.MODEL, specification["ModelName"])
            if model is None:
                raise ValueError(f"model {specification['ModelName']} does not exist")
            return model
        container = specification["Container"]
        return {
            "ModelName": record["InferenceComponentName"],
            "ModelArn": record["InferenceComponentArn"],
            "CreationTime": record["CreationTime"],
            "PrimaryContainer": {
                "Image": container["Image"],
                **(
                    {"ModelDataUrl": container["ArtifactUrl"]} if "ArtifactUrl" in container else {}
                ),
                "Environment": container.get("Environment", {}),
            },
        }

    def _forget(self, copy: Copy) -> None:
        if copy.replica is None and copy.starting is not None:
            copy.starting.cancel()
        copies = self.copies.get(copy.component, [])
        if copy in copies:
            copies.remove(copy)
        route = self.fleet.router.components.get(copy.component)
        if route is not None and copy.replica in route.pool.replicas:
            route.pool.replicas.remove(copy.replica)

    def _retire(self, copies: list[Copy]) -> None:
        """Out of the pool now; drained and stopped without holding up the pass."""
        replicas = [c.replica for c in copies if c.replica is not None]
        for copy in copies:
            self._forget(copy)
        if replicas:
            self.fleet.spawn(self._drain_and_stop(replicas))

    async def _update_trouble(self, record: Record) -> str:
        """Why an update in progress has to roll back: an alarm of its
        AutoRollbackConfiguration in ALARM, or past its MaximumExecutionTimeoutInSeconds."""
        if "_previous" not in record:
            return ""
        deployment = record.get("_deployment", {})
        limit = deployment.get("RollingUpdatePolicy", {}).get("MaximumExecutionTimeoutInSeconds")
        if limit is not None and time.time() > record.get("_update_started", 0) + limit:
            return f"the update did not finish within its {limit} s (MaximumExecutionTimeout)."
        for alarm in deployment.get("AutoRollbackConfiguration", {}).get("Alarms", []):
            found = await self.fleet.store.get(kinds.METRIC_ALARM, alarm["AlarmName"])
            if found is not None and found["StateValue"] == "ALARM":
                return (
                    f"alarm {alarm['AlarmName']} went into ALARM during the update "
                    f"({found.get('StateReason', '')})."
                )
        return ""

    async def _roll_back(self, record: Record, why: str) -> None:
        """Back to the specification that served before the update: its copies (those
        still running) become the current ones, under a new generation, the new
        specification's go, and any the update retired are placed again,
        `RollbackMaximumBatchSize` at a time. The component says why in its FailureReason
        until it is next updated."""
        name = record["InferenceComponentName"]
        previous = record["_previous"]
        failed = record["_generation"]
        fresh = failed + 1
        reason = fit_failure_reason(f"Update rolled back: {why}")

        def change(current: Record) -> Record | None:
            if current["_generation"] != failed or current["InferenceComponentStatus"] == (
                "Deleting"
            ):
                return None  # deleted or updated again meanwhile
            current["Specification"] = previous["Specification"]
            current["_generation"] = fresh
            current["_rolling_back"] = True
            current["_rolled_back"] = reason
            current["FailureReason"] = reason
            current["InferenceComponentStatus"] = "Updating"
            current["LastModifiedTime"] = round(time.time(), 3)
            del current["_previous"]
            return current

        stored = await self.fleet.store.modify(KIND, name, change)
        self.failed.pop(name, None)
        if stored is None or stored["_generation"] != fresh:
            return
        log.warning("inference component %s: %s", name, reason)
        copies = self.copies.get(name, [])
        for copy in copies:
            if copy.generation == previous["generation"]:
                copy.generation = fresh
        self._retire([c for c in copies if c.generation != fresh])
        self.wake()

    async def _stop(self, name: str, copies: list[Copy]) -> None:
        """Drain and stop copies (one still starting is stopped when it is up)."""
        replicas = [c.replica for c in copies if c.replica is not None]
        for copy in copies:
            self._forget(copy)
        if replicas:
            await self._drain_and_stop(replicas)

    async def _drain_and_stop(self, replicas: list[Replica]) -> None:
        for replica in replicas:
            replica.draining = True
        try:
            async with asyncio.timeout(60.0):
                await asyncio.gather(*(r.drained() for r in replicas))
        except TimeoutError:
            log.warning("inference component copies did not drain; stopping anyway")
        for replica in replicas:
            self.fleet.router.forget(replica)
        await asyncio.gather(*(r.instance.stop() for r in replicas), return_exceptions=True)

    async def _scale_from_zero(self, record: Record, target: Record) -> int:
        """A request found no copy: as SageMaker's NoCapacityInvocationFailures alarm and
        a step scaling policy would, the scalable target's minimum (at least one) copy."""
        wanted = max(1, int(target["MinCapacity"]))
        name = record["InferenceComponentName"]

        def change(current: Record) -> Record | None:
            if current["InferenceComponentStatus"] == "Deleting":
                return None
            current["RuntimeConfig"]["DesiredCopyCount"] = wanted
            current["InferenceComponentStatus"] = "Updating"
            return current

        await self.fleet.store.modify(KIND, name, change)
        record["RuntimeConfig"]["DesiredCopyCount"] = wanted
        record["InferenceComponentStatus"] = "Updating"
        log.info("inference component %s: scaling out from zero to %d copies", name, wanted)
        return wanted

    async def _report(
        self, record: Record, status: str, ready: int, reason: str, settled: bool = False
    ) -> None:
        """Write the component's status and CurrentCopyCount when they changed; `settled`:
        every copy is of the current specification, any update or rollback is over."""
        name = record["InferenceComponentName"]
        rolling = ("_previous", "_rolling_back", "_update_started")
        same = (
            not (settled and any(key in record for key in rolling))
            and record["InferenceComponentStatus"] == status
            and record["RuntimeConfig"].get("CurrentCopyCount") == ready
            and record.get("FailureReason", "") == reason
        )
        if same:
            return

        def change(current: Record) -> Record | None:
            if current["InferenceComponentStatus"] == "Deleting":
                return None
            if current["_generation"] != record["_generation"] or (
                current["RuntimeConfig"]["DesiredCopyCount"]
                != record["RuntimeConfig"]["DesiredCopyCount"]
            ):
                return None  # changed meanwhile: the next pass reports
            current["InferenceComponentStatus"] = status
            current["RuntimeConfig"]["CurrentCopyCount"] = ready
            current["LastModifiedTime"] = round(time.time(), 3)
            if reason:
                current["FailureReason"] = reason
            else:
                current.pop("FailureReason", None)
            if settled:
                for key in rolling:
                    current.pop(key, None)
            return current

        await self.fleet.store.modify(KIND, name, change)

    async def shutdown(self) -> None:
        for name in list(self.copies):
            await self._stop(name, list(self.copies[name]))
        self.fleet.router.components.clear()


def _variant(endpoint: Record, name: str) -> Record:
    for variant in endpoint["_desired"]["config"]["ProductionVariants"]:
        if variant["VariantName"] == name:
            return dict(variant)
    return {}


def _managed(variant: Record) -> Record | None:
    """The variant's ManagedInstanceScaling when ENABLED, else None."""
    managed = variant.get("ManagedInstanceScaling") or {}
    return managed if managed.get("Status") == "ENABLED" else None


def _share(instance_type: InstanceType, specification: Record) -> InstanceType:
    """The copy's slice of its instance type, which the backend limits it to."""
    compute = specification["ComputeResourceRequirements"]
    cores = float(compute.get("NumberOfCpuCoresRequired", instance_type.vcpu))
    memory_mb = compute.get("MaxMemoryRequiredInMb", compute["MinMemoryRequiredInMb"])
    return dataclasses.replace(
        instance_type,
        vcpu=max(1, math.ceil(cores - 1e-9)),
        memory_gib=memory_mb / 1024,
        gpus=math.ceil(float(compute.get("NumberOfAcceleratorDevicesRequired", 0)) - 1e-9),
        usd_per_hour=instance_type.usd_per_hour * cores / max(instance_type.vcpu, 1),
    )
