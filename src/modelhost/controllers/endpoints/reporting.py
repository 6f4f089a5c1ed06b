"""What the endpoint controller tells the outside about what runs: the endpoint record's
status and variants (DescribeEndpoint), the instance gauge, and the instance meter."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from modelhost import metrics
from modelhost.catalog import InstanceType
from modelhost.controllers.deployment import charge, charge_instances
from modelhost.controllers.endpoints.fleet import Fleet
from modelhost.domain import kinds
from modelhost.domain.endpoints import deployed_fields
from modelhost.router import Router, ServerlessPool, VariantPool

KIND = kinds.ENDPOINT
#: (endpoint, variant, instance type, instance count) of each variant that hosts
#: inference components.
Hosts = Callable[[], Iterable[tuple[str, str, InstanceType, int]]]


def count_instances(name: str, pools: dict[str, VariantPool]) -> None:
    for pool in pools.values():
        running = pool.hosts if pool.components else len(pool.available())
        metrics.INSTANCES.labels(name, pool.name).set(running)


async def write_status(
    fleet: Fleet,
    name: str,
    status: str | None,
    desired: dict[str, Any] | None,
    *,
    restore: bool = False,
    **fields: Any,
) -> None:
    """Record what the endpoint runs now. Never overwrites a delete the API asked for,
    nor a newer desired state that arrived while this operation ran."""
    deployment = fleet.router.deployments.get(name)
    # Read here, on the loop: `change` may run in a worker thread.
    current = (
        {}
        if deployment is None
        else {
            pool.name: (pool.weight, len(pool.available()))
            for pool in [*deployment.variants.values(), *deployment.shadows.values()]
        }
    )

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        if record["EndpointStatus"] == "Deleting":
            return None
        if (
            desired is not None
            and not restore
            and (record["_desired"]["generation"] != desired["generation"])
        ):
            return None
        if status is not None:
            record["EndpointStatus"] = status
            record["LastModifiedTime"] = round(time.time(), 3)
        if restore and desired is not None:
            record["_desired"] = {**desired, "generation": record["_desired"]["generation"]}
            if deployment is not None:
                deployment.generation = record["_desired"]["generation"]
        if status in ("InService", "UpdateRollbackFailed") and desired is not None:
            record["EndpointConfigName"] = desired["config"]["EndpointConfigName"]
            record.pop("PendingDeploymentSummary", None)
            if not fields:
                record.pop("FailureReason", None)
        source = record["_desired"] if restore or desired is None else desired
        # The new config may have none.
        record.pop("AsyncInferenceConfig", None)
        record.pop("DataCaptureConfig", None)
        record.pop("ShadowProductionVariants", None)
        record.update(deployed_fields(source, current))
        record.update(fields)
        return record

    await fleet.store.modify(KIND, name, change)


class Meter:
    """Charges every running instance's meter for the time between two calls.

    A variant that hosts inference components is billed for its instances, as SageMaker
    bills it, whatever copies run on them: its copies are not metered (they are shares of
    those instances), its instance count of its type is."""

    def __init__(self, router: Router, hosts: Hosts) -> None:
        self.router = router
        self.hosts = hosts
        self._metered_at = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        elapsed, self._metered_at = now - self._metered_at, now
        for name, deployment in self.router.deployments.items():
            for replica in deployment.replicas():
                # Serverless instances are billed per request (see ServerlessPool.leave).
                if not isinstance(deployment.variants.get(replica.variant), ServerlessPool):
                    charge(name, replica.variant, replica.instance, elapsed)
        for name, variant, kind, count in self.hosts():
            charge_instances(name, variant, kind, count, elapsed)


async def show_waiting(
    fleet: Fleet, name: str, generation: int, variant: str, message: str, since: float
) -> None:
    """Show what a variant's starting instances wait for (an image pull) as its
    `VariantStatus` while the endpoint is Creating or Updating, as SageMaker shows a
    variant's progress there. The next status write rebuilds the variants without it."""

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        state = record["EndpointStatus"]
        if state not in ("Creating", "Updating") or record["_desired"]["generation"] != generation:
            return None
        for summary in record.get("ProductionVariants") or []:
            if summary["VariantName"] == variant:
                summary["VariantStatus"] = [
                    {"Status": state, "StatusMessage": message, "StartTime": since}
                ]
                return record
        return None

    await fleet.store.modify(KIND, name, change)
