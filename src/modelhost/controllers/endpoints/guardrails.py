"""Deployment guardrails: an UpdateEndpoint with a `DeploymentConfig` moves traffic to
the new fleet in steps, bakes after each, and rolls back when an alarm goes off.

Blue/green (`BlueGreenUpdatePolicy`): the whole new fleet starts beside the old one, then
the old deployment's `incoming` share grows step by step (ALL_AT_ONCE: 100 %; CANARY: the
canary size, then 100 %; LINEAR: one step size at a time), baking `WaitIntervalInSeconds`
after each step and `TerminationWaitInSeconds` after the last before the old fleet drains.
A share counts capacity: an INSTANCE_COUNT canary of n takes n / (new instances) of the
requests. Rolling (`RollingUpdatePolicy`): new instances start a batch at a time, old ones
stop a batch at a time, and the new fleet takes the share its instances are of all that
serve. Requests never fail because of a shift: a fleet stops only after it is out of the
split and its requests in flight have finished.

During every bake the alarms of `AutoRollbackConfiguration` are read from the state store
(the alarm evaluator moves them); one in ALARM rolls back: traffic goes back to the old
fleet (for a rolling update, the old instances that stopped start again, a
`RollbackMaximumBatchSize` at a time), the new one drains and stops, and the endpoint is
InService on its old config with a FailureReason naming the alarm. A rollback that
cannot bring the old fleet back leaves the endpoint UpdateRollbackFailed.

While a shift runs, the new fleet's instances are not pinged, replaced or metered: they
are only routed to. The health path takes them over when the new deployment is published.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelhost.controllers.deployment import numbered, start_ready
from modelhost.controllers.endpoints.fleet import Fleet
from modelhost.controllers.endpoints.reporting import KIND
from modelhost.domain import kinds
from modelhost.router import Deployment, Replica, VariantPool

# How often a bake reads the alarms it watches.
ALARM_POLL_S = 0.2


class RolledBack(Exception):
    """An alarm went off: traffic is back on the old fleet; the message says why."""


class RollbackFailed(Exception):
    """The old fleet could not be brought back; the message says why."""


@dataclass(frozen=True)
class Step:
    share: float  # of the traffic on the new fleet once the step is taken
    bake_s: float  # how long alarms are watched after it


def _size(capacity: dict[str, Any], total: int) -> float:
    """A CapacitySize as a share of `total` instances (at least one step's worth)."""
    if capacity["Type"] == "INSTANCE_COUNT":
        return min(float(capacity["Value"]) / max(total, 1), 1.0)
    return min(float(capacity["Value"]) / 100.0, 1.0)


def blue_green_steps(policy: dict[str, Any], new_instances: int) -> list[Step]:
    routing = policy["TrafficRoutingConfiguration"]
    wait_s = float(routing["WaitIntervalInSeconds"])
    final = Step(1.0, float(policy.get("TerminationWaitInSeconds", 0)))
    if routing["Type"] == "CANARY":
        share = _size(routing["CanarySize"], new_instances)
        return [Step(share, wait_s), final] if share < 1.0 else [final]
    if routing["Type"] == "LINEAR":
        step = _size(routing["LinearStepSize"], new_instances)
        count = math.ceil(1.0 / step - 1e-9)
        return [Step(min(step * i, 1.0), wait_s) for i in range(1, count)] + [final]
    return [final]


def batch_size(capacity: dict[str, Any], total: int) -> int:
    """Instances per batch of a rolling update: at least one."""
    if capacity["Type"] == "INSTANCE_COUNT":
        return max(int(capacity["Value"]), 1)
    return max(math.floor(total * float(capacity["Value"]) / 100.0), 1)


class Guard:
    """One guarded update: reports progress and watches its alarms."""

    def __init__(self, fleet: Fleet, name: str, desired: dict[str, Any]) -> None:
        self.fleet = fleet
        self.name = name
        self.desired = desired
        config = desired["deployment"]
        self.alarms = [
            a["AlarmName"] for a in config.get("AutoRollbackConfiguration", {}).get("Alarms", [])
        ]

    async def bake(self, seconds: float) -> None:
        """Watch the alarms for `seconds` (and once even for none)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while True:
            for alarm in self.alarms:
                record = await self.fleet.store.get(kinds.METRIC_ALARM, alarm)
                if record is not None and record["StateValue"] == "ALARM":
                    raise RolledBack(
                        f"Alarm {alarm} went into ALARM while the update was baking "
                        f"({record.get('StateReason', '')}); traffic was rolled back to the "
                        "old fleet."
                    )
            remaining = until - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(ALARM_POLL_S, remaining))

    async def restart(self, replica: Replica) -> Replica:
        """A new instance in place of an old one a rolling update stopped."""
        settings = self.fleet.settings
        spec = numbered(
            settings, replica.instance.spec, self.name, replica.variant, next(self.fleet.counter)
        )
        instance = await start_ready(self.fleet.backend, spec, settings.startup_timeout_s)
        return Replica(instance, replica.variant)

    async def report(self, new: Deployment, share: float, status: str, message: str) -> None:
        """PendingDeploymentSummary.ProductionVariants: the new fleet as it stands."""
        now = round(time.time(), 3)
        summaries = []
        for variant in self.desired["config"]["ProductionVariants"]:
            pool = new.variants.get(variant["VariantName"])
            capacity = self.desired["capacity"][variant["VariantName"]]
            summaries.append(
                {
                    "VariantName": variant["VariantName"],
                    "CurrentWeight": round(capacity["weight"] * share, 6),
                    "DesiredWeight": capacity["weight"],
                    "CurrentInstanceCount": 0 if pool is None else len(pool.available()),
                    "DesiredInstanceCount": capacity.get("count", 0),
                    "InstanceType": variant.get("InstanceType", ""),
                    "VariantStatus": [
                        {"Status": status, "StatusMessage": message, "StartTime": now}
                    ],
                }
            )
        generation = self.desired["generation"]

        def change(record: dict[str, Any]) -> dict[str, Any] | None:
            pending = record.get("PendingDeploymentSummary")
            if record["_desired"]["generation"] != generation or pending is None:
                return None
            pending["ProductionVariants"] = summaries
            return record

        await self.fleet.store.modify(KIND, self.name, change)


def _shift(old: Deployment, new: Deployment, share: float) -> None:
    old.incoming = new
    old.incoming_share = share


async def _unshift(old: Deployment, stop: Callable[[list[Replica]], Awaitable[None]]) -> None:
    """Traffic back on the old fleet; the new one drains and stops."""
    new = old.incoming
    old.incoming, old.incoming_share = None, 0.0
    if new is not None:
        await stop(new.replicas())


async def blue_green(
    guard: Guard,
    old: Deployment,
    new: Deployment,
    stop: Callable[[list[Replica]], Awaitable[None]],
) -> None:
    """Shift from `old` to `new` (both running) as the policy says; returns once all
    traffic is on `new`, which the caller then publishes. Rolls back on an alarm."""
    policy = guard.desired["deployment"]["BlueGreenUpdatePolicy"]
    steps = blue_green_steps(policy, sum(len(p.replicas) for p in new.variants.values()))
    try:
        for index, step in enumerate(steps, 1):
            _shift(old, new, step.share)
            guard.fleet.router.changed()
            await guard.report(
                new,
                step.share,
                "Baking",
                f"Step {index} of {len(steps)}: {step.share:.0%} of traffic on the new fleet; "
                f"baking {step.bake_s:g} s.",
            )
            await guard.bake(step.bake_s)
    except BaseException:
        await _unshift(old, stop)
        raise
    old.incoming, old.incoming_share = None, 0.0


async def rolling(
    guard: Guard,
    old: Deployment,
    new: Deployment,
    start: Callable[[str, int], Awaitable[list[Replica]]],
    stop: Callable[[list[Replica]], Awaitable[None]],
) -> None:
    """Replace `old`'s instances with `new`'s (whose pools start empty) a batch at a time.
    `start(variant, n)` starts n instances of a new variant; returns once `new` has them
    all and `old` none, for the caller to publish `new`."""
    policy = guard.desired["deployment"]["RollingUpdatePolicy"]
    wanted = {v: c["count"] for v, c in guard.desired["capacity"].items()}
    total = sum(wanted.values())
    size = batch_size(policy["MaximumBatchSize"], total)
    rollback_size = batch_size(
        policy.get("RollbackMaximumBatchSize", policy["MaximumBatchSize"]), total
    )
    stopped: list[Replica] = []
    try:
        while any(len(new.variants[v].replicas) < n for v, n in wanted.items()) or any(
            not r.draining for r in old.replicas()
        ):
            budget = size
            for variant, count in wanted.items():
                missing = min(count - len(new.variants[variant].replicas), budget)
                if missing > 0:
                    new.variants[variant].replicas.extend(await start(variant, missing))
                    budget -= missing
            serving_new = sum(len(p.replicas) for p in new.variants.values())
            leaving = [r for r in old.replicas() if not r.draining][:size]
            for replica in leaving:
                replica.draining = True
            remaining_old = sum(1 for r in old.replicas() if not r.draining)
            share = serving_new / max(serving_new + remaining_old, 1)
            _shift(old, new, share)
            guard.fleet.router.changed()
            await stop(leaving)
            stopped.extend(leaving)
            await guard.report(
                new,
                share,
                "Baking",
                f"{serving_new} of {total} new instances serve, {remaining_old} old ones "
                f"remain; baking {policy['WaitIntervalInSeconds']} s.",
            )
            await guard.bake(float(policy["WaitIntervalInSeconds"]))
    except BaseException:
        for replica in old.replicas():
            if replica.draining and replica not in stopped and replica.instance.is_alive():
                replica.draining = False
        try:
            await _restore(old, stopped, rollback_size, start_old=guard.restart)
        except BaseException as failure:
            raise RollbackFailed(
                f"Rolling back could not restart the old instances: {failure}"
            ) from failure
        finally:
            await _unshift(old, stop)
        raise
    old.incoming, old.incoming_share = None, 0.0


async def _restore(
    old: Deployment,
    stopped: list[Replica],
    batch: int,
    start_old: Callable[[Replica], Awaitable[Replica]],
) -> None:
    """Start again, `batch` at a time, the old instances a rolling update stopped."""
    for first in range(0, len(stopped), batch):
        chunk = stopped[first : first + batch]
        fresh = await asyncio.gather(*(start_old(r) for r in chunk))
        for replica, replacement in zip(chunk, fresh, strict=True):
            pool: VariantPool = old.variants[replica.variant]
            pool.replicas = [replacement if r is replica else r for r in pool.replicas]
