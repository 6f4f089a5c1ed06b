"""The autoscaling controller: moves each scalable target's instance count as its policies,
scheduled actions and capacity range say.

Every few moments it reads the metrics the policies track (through the metric resolver);
every evaluation interval it goes over the targets in the state store: fires due scheduled
actions, keeps the count inside [MinCapacity, MaxCapacity], and asks every target tracking
policy for the count that brings its metric to the target value. It scales out when any
policy asks for more (the largest wins) and scales in only when all ask for less, for a
whole metric window in a row, outside the cooldowns. When target tracking leaves the count
as it is, the step scaling policies invoked by CloudWatch alarms in ALARM may move it
(see `controllers/alarms.py`). A change is an
UpdateEndpointWeightsAndCapacities call, so the endpoint controller applies it (new
instances join once ready; removed ones drain first), and each change is recorded as a
scaling activity. An inference component's target counts copies instead of instances: its
policies track the component's metrics (dimension InferenceComponentName) and a change is
an UpdateInferenceComponentRuntimeConfig call, which the component controller applies.
Cooldown times and scheduled runs are kept in the store, so a restarted server carries on
where it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from modelhost import api
from modelhost.api.inference_components import update_inference_component_runtime_config
from modelhost.api.scaling_activities import (
    finish_activity,
    note_activity,
    open_activities,
    record_activity,
)
from modelhost.controllers.alarms import AlarmEvaluator, step_count
from modelhost.controllers.loop import ReconcileLoop
from modelhost.controllers.scaling_metrics import MetricResolver, SeriesKey, series_key
from modelhost.domain import scaling_schedules
from modelhost.domain.kinds import INFERENCE_COMPONENT as COMPONENT_KIND
from modelhost.domain.kinds import METRIC_ALARM as ALARM_KIND
from modelhost.domain.kinds import SCALABLE_TARGET as TARGET_KIND
from modelhost.domain.kinds import SCALING_POLICY as POLICY_KIND
from modelhost.domain.kinds import SCHEDULED_ACTION as ACTION_KIND
from modelhost.domain.scaling import child_key, target_key, tracked_metric
from modelhost.errors import SageMakerError
from modelhost.storage import LoopStore, Ownership, lease

log = logging.getLogger(__name__)

Record = dict[str, Any]
_TRACKING = "TargetTrackingScalingPolicyConfiguration"
# SageMaker's default cooldowns for target tracking policies.
_DEFAULT_COOLDOWN_S = 300
_SCALE_IN_HEADROOM = 0.9
Fired = dict[str, list[tuple[Record, float | None]]]  # policy ARN -> alarms in ALARM


@dataclass(frozen=True)
class _Proposal:
    count: int
    policy: Record
    metric: str
    value: float
    unit: str

    def reason(self, current: int) -> str:
        target = self.policy[_TRACKING]["TargetValue"]
        side = "above" if self.value > target else "below"
        return (
            f"policy {self.policy['PolicyName']}: {self.metric} was {self.value:.4g}, "
            f"{side} its target {target:g}, with {current} {self.unit}"
        )


class AutoscalingController(ReconcileLoop):
    """Runs on a fixed cadence only: the loop's interval is the sampling cadence, and
    nothing notifies it, because a pass takes a reading and the windowed statistics
    (an average of a gauge's readings) assume evenly spaced ones."""

    def __init__(self, ctx: api.Context, resolver: MetricResolver, ownership: Ownership) -> None:
        self.ctx = ctx
        self.ownership = ownership
        # Awaited store calls: a pass's reads and writes run in a worker thread unless
        # the store is a local file.
        self.store = LoopStore(ctx.store)
        self.resolver = resolver
        self.interval_s = max(ctx.settings.autoscaling_interval_s, 0.05)
        super().__init__("autoscaling pass", min(1.0, max(0.05, self.interval_s / 4)))
        # Scale in only after the policies agreed on it for a whole metric window.
        self.scale_in_evaluations = max(1, math.ceil(resolver.window_s / self.interval_s))
        self.alarms = AlarmEvaluator(ctx, resolver, self.owns)
        self._next_evaluation = 0.0

    async def prepare(self) -> None:
        self._next_evaluation = time.monotonic() + self.interval_s

    def owns(self, endpoint: str | None) -> bool:
        """Whether this server scales `endpoint` (and evaluates the alarms on it): the
        server that runs its instances, which alone sees its traffic. What names no
        endpoint goes with the autoscaling loop's own lease."""
        if endpoint is None:
            return self.ownership.owns(self.LEASE)
        return self.ownership.owns(lease("endpoint", endpoint))

    #: The lease of what names no endpoint (alarms on other metrics).
    LEASE = lease("autoscaling", "*")

    async def step(self) -> None:
        """Sample every pass; evaluate once an evaluation interval has gone by."""
        if not self.ownership.exclusive and not self.ownership.owns(self.LEASE):
            await self.ownership.claim([self.LEASE])
        targets, policies, alarms = await self.store.call(self._read)
        self.sample(targets, policies, alarms)  # on the loop: it reads the router
        if time.monotonic() >= self._next_evaluation:
            self._next_evaluation = time.monotonic() + self.interval_s
            # Store reads and writes (and API operations) only: off the loop. Nothing
            # else samples meanwhile, so the resolver's readings stay as they are.
            await self.store.call(self.evaluate)

    def _read(self) -> tuple[list[Record], list[Record], list[Record]]:
        store = self.ctx.store
        return store.list(TARGET_KIND), store.list(POLICY_KIND), store.list(ALARM_KIND)

    # --- metrics ---------------------------------------------------------------------

    def _series(self, policy: Record, target: Record) -> tuple[str, dict[str, str], str]:
        name, dimensions, statistic = tracked_metric(policy[_TRACKING])
        if "_component" in target:
            dimensions.setdefault("InferenceComponentName", target["_component"])
        else:
            dimensions.setdefault("EndpointName", target["_endpoint"])
            dimensions.setdefault("VariantName", target["_variant"])
        return name, dimensions, statistic

    def sample(
        self, target_records: list[Record], policies: list[Record], alarms: list[Record]
    ) -> None:
        """One reading of every metric a target tracking policy or an alarm watches."""
        targets = {target_key(t["ResourceId"]): t for t in target_records}
        watched: set[SeriesKey] = set()
        for policy in policies:
            target = targets.get(target_key(policy["ResourceId"]))
            if target is None or _TRACKING not in policy:
                continue
            name, dimensions, _ = self._series(policy, target)
            key = series_key(name, dimensions)
            if key not in watched:
                watched.add(key)
                self.resolver.sample(name, dimensions)
        watched.update(self.alarms.sample(alarms))
        self.resolver.forget_except(watched)

    # --- evaluation ------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        store = self.ctx.store
        fired = self.alarms.evaluate()
        policies: dict[str, list[Record]] = {}
        for policy in store.list(POLICY_KIND):
            policies.setdefault(target_key(policy["ResourceId"]), []).append(policy)
        actions: dict[str, list[Record]] = {}
        for action in store.list(ACTION_KIND):
            actions.setdefault(target_key(action["ResourceId"]), []).append(action)
        for target in store.list(TARGET_KIND):
            if not self.owns(target["_endpoint"]):
                continue
            key = target_key(target["ResourceId"])
            try:
                self._evaluate(target, policies.get(key, []), actions.get(key, []), now, fired)
            except Exception:
                log.exception("autoscaling %s failed; retrying", target["ResourceId"])

    def _evaluate(
        self,
        target: Record,
        policies: list[Record],
        actions: list[Record],
        now: float,
        fired: Fired,
    ) -> None:
        if "_component" in target:
            self._evaluate_component(target, policies, actions, now)
            return
        endpoint = self.ctx.store.get("endpoint", target["_endpoint"])
        self._finish_activities(target, endpoint)
        if endpoint is None or endpoint["EndpointStatus"] != "InService":
            return
        capacity = endpoint["_desired"]["capacity"].get(target["_variant"])
        if capacity is None:  # the endpoint was updated to a config without the variant
            return
        count = capacity["count"]
        state = dict(target["_state"])
        suspended = target["SuspendedState"]
        if not suspended.get("ScheduledScalingSuspended"):
            for action in actions:
                target = self._run_if_due(action, target, now)
        low, high = target["MinCapacity"], target["MaxCapacity"]
        wanted, cause = count, ""
        if count < low:
            wanted, cause = low, f"the minimum capacity {low} is above the current capacity"
        elif count > high:
            wanted, cause = high, f"the maximum capacity {high} is below the current capacity"
        else:
            wanted, cause = self._dynamic(target, policies, count, state, now)
            if wanted == count:
                wanted, cause = self._steps(target, policies, fired, count, state, now)
        if wanted != count:
            self._scale(target, endpoint, count, wanted, cause, state, now)
        if state != target["_state"]:
            self._save_state(target, state)

    def _evaluate_component(
        self, target: Record, policies: list[Record], actions: list[Record], now: float
    ) -> None:
        """An inference component's copy count, by its target tracking policies (step
        scaling is refused on components) within the target's range. While copies start
        it waits (they count once they serve); while copies are pending for want of room
        it may only scale in, so a load that has gone is not held at a count that never
        fit."""
        component = self.ctx.store.get(COMPONENT_KIND, target["_component"])
        self._finish_component_activities(target, component)
        if component is None:
            return
        status = component["InferenceComponentStatus"]
        pending = status in ("Creating", "Updating") and "FailureReason" in component
        if status != "InService" and not pending:
            return
        count = component["RuntimeConfig"]["DesiredCopyCount"]
        state = dict(target["_state"])
        if not target["SuspendedState"].get("ScheduledScalingSuspended"):
            for action in actions:
                target = self._run_if_due(action, target, now)
        low, high = target["MinCapacity"], target["MaxCapacity"]
        if count < low:
            wanted, cause = low, f"the minimum capacity {low} is above the current capacity"
        elif count > high:
            wanted, cause = high, f"the maximum capacity {high} is below the current capacity"
        else:
            serving = component["RuntimeConfig"].get("CurrentCopyCount", 0)
            wanted, cause = self._dynamic(target, policies, count, state, now, "copies", serving)
        if pending and wanted > count:
            wanted = count
        if wanted != count:
            self._scale_component(target, count, wanted, cause, state, now)
        if state != target["_state"]:
            self._save_state(target, state)

    def _dynamic(
        self,
        target: Record,
        policies: list[Record],
        count: int,
        state: Record,
        now: float,
        unit: str = "instance(s)",
        serving: int | None = None,
    ) -> tuple[int, str]:
        """The count target tracking asks for, once cooldowns and suspensions allow it.
        The load a metric stands for is its value times the units `serving` (by default
        the count): what a per-copy metric divides by while some copies wait for room."""
        proposals = []
        undecided = False  # a policy without data yet vetoes a scale-in
        for policy in policies:
            if _TRACKING not in policy:
                continue
            config = policy[_TRACKING]
            name, dimensions, statistic = self._series(policy, target)
            value = self.resolver.value(name, dimensions, statistic)
            if value is None:
                undecided = True
                continue
            # From zero instances, whatever the metric holds (a backlog) asks for
            # instances as if one served it.
            load = max(count if serving is None else serving, 1) * value
            wanted = math.ceil(load / config["TargetValue"] - 1e-9)
            if wanted < count:
                # Scale in only as far as leaves the metric 10% under its target: a load
                # right at the target must not flap between two counts.
                wanted = min(
                    count, math.ceil(load / (config["TargetValue"] * _SCALE_IN_HEADROOM) - 1e-9)
                )
            if config.get("DisableScaleIn"):
                wanted = max(wanted, count)
            proposals.append(_Proposal(wanted, policy, name, value, unit))
        if not proposals:
            state["below"] = 0
            return count, ""
        best = max(proposals, key=lambda p: p.count)
        wanted = min(max(best.count, target["MinCapacity"]), target["MaxCapacity"])
        suspended = target["SuspendedState"]
        if wanted > count:
            state["below"] = 0
            cooldown = best.policy[_TRACKING].get("ScaleOutCooldown", _DEFAULT_COOLDOWN_S)
            if suspended.get("DynamicScalingOutSuspended") or (
                now - state.get("scaled_out_at", 0) < cooldown
            ):
                return count, ""
            return wanted, best.reason(count)
        if wanted < count and not undecided:
            state["below"] = state.get("below", 0) + 1
            cooldown = max(
                p.policy[_TRACKING].get("ScaleInCooldown", _DEFAULT_COOLDOWN_S) for p in proposals
            )
            last = max(state.get("scaled_in_at", 0), state.get("scaled_out_at", 0))
            if (
                suspended.get("DynamicScalingInSuspended")
                or state["below"] < self.scale_in_evaluations
                or now - last < cooldown
            ):
                return count, ""
            return wanted, best.reason(count)
        state["below"] = 0
        return count, ""

    def _steps(
        self,
        target: Record,
        policies: list[Record],
        fired: Fired,
        count: int,
        state: Record,
        now: float,
    ) -> tuple[int, str]:
        """The count the step scaling policies invoked by alarms in ALARM ask for (the
        first that asks for a change, outside its cooldown and the suspensions)."""
        suspended = target["SuspendedState"]
        for policy in policies:
            if "StepScalingPolicyConfiguration" not in policy:
                continue
            config = policy["StepScalingPolicyConfiguration"]
            cooled = state.get(f"step:{policy['PolicyName']}", 0)
            if now - cooled < config.get("Cooldown", _DEFAULT_COOLDOWN_S):
                continue
            for alarm, value in fired.get(policy["PolicyARN"], []):
                aggregation = config.get("MetricAggregationType")
                breach = self.alarms.value(alarm, aggregation) if aggregation else value
                asked = None if breach is None else step_count(policy, alarm, breach, count)
                if asked is None:
                    continue
                wanted = min(max(asked, target["MinCapacity"]), target["MaxCapacity"])
                if wanted == count or suspended.get(
                    "DynamicScalingOutSuspended" if wanted > count else "DynamicScalingInSuspended"
                ):
                    continue
                state[f"step:{policy['PolicyName']}"] = now
                return wanted, (
                    f"monitor alarm {alarm['AlarmName']} in state ALARM "
                    f"triggered policy {policy['PolicyName']}"
                )
        return count, ""

    def _scale(
        self,
        target: Record,
        endpoint: Record,
        count: int,
        wanted: int,
        cause: str,
        state: Record,
        now: float,
    ) -> None:
        description = f"Setting desired instance count to {wanted}."
        cause = f"{cause}; changing the desired instance count from {count} to {wanted}"
        name = endpoint["EndpointName"]
        try:
            api.update_endpoint_weights_and_capacities(
                self.ctx,
                {
                    "EndpointName": name,
                    "DesiredWeightsAndCapacities": [
                        {"VariantName": target["_variant"], "DesiredInstanceCount": wanted}
                    ],
                },
            )
            changed = self.ctx.store.get("endpoint", name)
        except SageMakerError as error:
            log.warning("autoscaling %s: %s", target["ResourceId"], error.message)
            record_activity(
                self.ctx, target, description, cause, "Failed", StatusMessage=error.message
            )
            return
        log.info("autoscaling %s: %s (%s)", target["ResourceId"], description, cause)
        if changed is None:  # deleted meanwhile
            return
        record_activity(
            self.ctx,
            target,
            description,
            cause,
            _generation=changed["_desired"]["generation"],
            _count=wanted,
        )
        state["scaled_out_at" if wanted > count else "scaled_in_at"] = now
        state["below"] = 0

    def _scale_component(
        self, target: Record, count: int, wanted: int, cause: str, state: Record, now: float
    ) -> None:
        description = f"Setting desired copy count to {wanted}."
        cause = f"{cause}; changing the desired copy count from {count} to {wanted}"
        try:
            update_inference_component_runtime_config(
                self.ctx,
                {
                    "InferenceComponentName": target["_component"],
                    "DesiredRuntimeConfig": {"CopyCount": wanted},
                },
            )
        except SageMakerError as error:
            log.warning("autoscaling %s: %s", target["ResourceId"], error.message)
            record_activity(
                self.ctx, target, description, cause, "Failed", StatusMessage=error.message
            )
            return
        log.info("autoscaling %s: %s (%s)", target["ResourceId"], description, cause)
        record_activity(self.ctx, target, description, cause, _count=wanted)
        state["scaled_out_at" if wanted > count else "scaled_in_at"] = now
        state["below"] = 0

    def _finish_component_activities(self, target: Record, component: Record | None) -> None:
        """Close the activities whose copy count the component runs (or that a later
        change replaced)."""
        for key, activity in open_activities(self.ctx, target["ResourceId"]).items():
            if component is None:
                finish_activity(self.ctx, key, "Failed", "The inference component was deleted.")
                continue
            runtime = component["RuntimeConfig"]
            if runtime["DesiredCopyCount"] != activity["_count"]:
                finish_activity(
                    self.ctx, key, "Overridden", "A later change to the copy count replaced it."
                )
            elif component["InferenceComponentStatus"] == "InService" and (
                runtime.get("CurrentCopyCount") == activity["_count"]
            ):
                finish_activity(
                    self.ctx,
                    key,
                    "Successful",
                    f"Successfully set desired copy count to {activity['_count']}.",
                )
            elif component.get("FailureReason"):
                note_activity(self.ctx, key, component["FailureReason"])

    def _finish_activities(self, target: Record, endpoint: Record | None) -> None:
        """Close the activities whose change the endpoint has carried out (or given up)."""
        for key, activity in open_activities(self.ctx, target["ResourceId"]).items():
            if endpoint is None:
                finish_activity(self.ctx, key, "Failed", "The endpoint was deleted.")
                continue
            if endpoint["EndpointStatus"] != "InService" or (
                endpoint["_desired"]["generation"] < activity["_generation"]
            ):
                if waiting := _waiting_for(endpoint, target["_variant"]):
                    note_activity(self.ctx, key, waiting)
                continue
            running = {
                v["VariantName"]: v["CurrentInstanceCount"] for v in endpoint["ProductionVariants"]
            }
            if running.get(target["_variant"]) == activity["_count"]:
                finish_activity(
                    self.ctx,
                    key,
                    "Successful",
                    f"Successfully set desired instance count to {activity['_count']}.",
                )
            elif endpoint["_desired"]["generation"] > activity["_generation"]:
                finish_activity(
                    self.ctx, key, "Overridden", "A later change to the endpoint replaced this one."
                )
            else:
                finish_activity(
                    self.ctx,
                    key,
                    "Failed",
                    endpoint.get("FailureReason", "The endpoint did not scale."),
                )

    def _run_if_due(self, action: Record, target: Record, now: float) -> Record:
        """Fire a scheduled action whose time has come; returns the target as it is now."""
        schedule = scaling_schedules.parse(action["Schedule"])
        since = max(action["_since"], action.get("_last_run", 0), action.get("StartTime", 0))
        until = min(now, action.get("EndTime", now))
        fired = schedule.latest(until, since, scaling_schedules.zone(action.get("Timezone")))
        if fired is None:
            return target
        key = child_key(action["ResourceId"], action["ScheduledActionName"])
        self.ctx.store.modify(ACTION_KIND, key, lambda a: {**a, "_last_run": fired})
        change = action.get("ScalableTargetAction", {})
        low = change.get("MinCapacity", target["MinCapacity"])
        high = change.get("MaxCapacity", target["MaxCapacity"])
        if low > high:  # only one bound given, past the other: the given one wins
            low, high = (low, low) if "MinCapacity" in change else (high, high)

        def update(record: Record) -> Record:
            record.update(MinCapacity=low, MaxCapacity=high)
            return record

        updated = self.ctx.store.modify(TARGET_KIND, target_key(target["ResourceId"]), update)
        record_activity(
            self.ctx,
            target,
            f"Setting min capacity to {low} and max capacity to {high}",
            f"scheduled action name {action['ScheduledActionName']} was triggered",
            "Successful",
        )
        return updated or target

    def _save_state(self, target: Record, state: Record) -> None:
        def update(record: Record) -> Record:
            record["_state"] = state
            return record

        self.ctx.store.modify(TARGET_KIND, target_key(target["ResourceId"]), update)


def _waiting_for(endpoint: Record, variant: str) -> str:
    """What the variant's starting instances wait for (a Ray node with room, an image
    pull), as its VariantStatus in DescribeEndpoint says; "" when nothing is shown."""
    for summary in endpoint.get("ProductionVariants") or []:
        if summary["VariantName"] == variant:
            return " ".join(s.get("StatusMessage", "") for s in summary.get("VariantStatus", []))
    return ""
