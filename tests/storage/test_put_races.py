"""API operations that write a record another writer may change meanwhile, with that
other write interleaved at the worst moment, against every state store.

Several servers share one PostgreSQL store, so a Put* on one can run while a controller
(or another Put) on another writes the same record. Threads would collide only by
chance; here the store the operation sees runs the other write at a chosen point of the
operation's own calls (just before its first write of the record, where a read-then-put
has read already; or just after it), which is the interleaving that lost the other write
when the operation read the record and put it back whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from modelhost.api import alarms, models, scalable_targets, scaling_policies, scheduled_actions
from modelhost.api.context import Context
from modelhost.api.resources import create
from modelhost.config import Settings
from modelhost.domain import kinds
from modelhost.domain.scaling import child_key
from modelhost.storage import Record, StateStore

RESOURCE_ID = "endpoint/shared/variant/AllTraffic"
TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": RESOURCE_ID,
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


class Interleaved:
    """`store`, with `other` run once on it around the first write (insert, put, modify
    or delete) of the record `kind`/`name` made through this wrapper: `before` it or
    `after` it."""

    def __init__(
        self, store: StateStore, kind: str, name: str, other: Callable[[], object], when: str
    ) -> None:
        self.store = store
        self._record = (kind, name)
        self._other: Callable[[], object] | None = other
        self._when = when

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.store, attribute)

    def _write(self, kind: str, name: str, call: Callable[[], Any]) -> Any:
        other = self._other if (kind, name) == self._record else None
        if other is None:
            return call()
        self._other = None
        if self._when == "before":
            other()
        result = call()
        if self._when == "after":
            other()
        return result

    def insert(self, kind: str, name: str, record: Record, **options: Any) -> bool:
        return bool(
            self._write(kind, name, lambda: self.store.insert(kind, name, record, **options))
        )

    def put(self, kind: str, name: str, record: Record) -> None:
        self._write(kind, name, lambda: self.store.put(kind, name, record))

    def modify(
        self, kind: str, name: str, change: Callable[[Record], Record | None]
    ) -> Record | None:
        return cast(
            Record | None, self._write(kind, name, lambda: self.store.modify(kind, name, change))
        )

    def delete(self, kind: str, name: str, **options: Any) -> bool:
        return bool(self._write(kind, name, lambda: self.store.delete(kind, name, **options)))

    @property
    def interleaved(self) -> bool:
        return self._other is None


@pytest.fixture
def ctx(store: StateStore, tmp_path: Path) -> Context:
    """A context on the store with an endpoint whose variant is a registered target."""
    context = Context(Settings(data_dir=tmp_path), store)
    store.put(kinds.ENDPOINT, "shared", {"_desired": {"capacity": {"AllTraffic": {"count": 1}}}})
    scalable_targets.register_scalable_target(
        context, {**TARGET, "MinCapacity": 1, "MaxCapacity": 4}
    )
    return context


def _interleaved(
    ctx: Context, kind: str, name: str, other: Callable[[], object], when: str = "before"
) -> tuple[Context, Interleaved]:
    wrapper = Interleaved(ctx.store, kind, name, other, when)
    return Context(ctx.settings, cast(StateStore, wrapper)), wrapper


ALARM = {
    "AlarmName": "busy",
    "Namespace": "AWS/SageMaker",
    "MetricName": "InvocationsPerInstance",
    "Dimensions": [{"Name": "EndpointName", "Value": "shared"}],
    "Statistic": "Sum",
    "Period": 60,
    "EvaluationPeriods": 1,
    "Threshold": 10.0,
    "ComparisonOperator": "GreaterThanThreshold",
}


def test_put_metric_alarm_keeps_a_state_the_controller_set_meanwhile(ctx: Context) -> None:
    alarms.put_metric_alarm(ctx, ALARM)

    def controller_alarms(alarm: Record) -> Record:  # as controllers/alarms.py advances it
        return {
            **alarm,
            "StateValue": "ALARM",
            "StateReason": "Threshold Crossed",
            "StateUpdatedTimestamp": 2000.0,
            "StateTransitionedTimestamp": 2000.0,
            "_datapoints": [True],
        }

    racing, wrapper = _interleaved(
        ctx,
        kinds.METRIC_ALARM,
        "busy",
        lambda: ctx.store.modify(kinds.METRIC_ALARM, "busy", controller_alarms),
    )
    alarms.put_metric_alarm(racing, {**ALARM, "Threshold": 20.0, "AlarmDescription": "new"})
    assert wrapper.interleaved
    (stored,) = alarms.describe_alarms(ctx, {"AlarmNames": ["busy"]})["MetricAlarms"]
    assert stored["Threshold"] == 20.0 and stored["AlarmDescription"] == "new"
    assert stored["StateValue"] == "ALARM" and stored["StateReason"] == "Threshold Crossed"
    assert stored["StateTransitionedTimestamp"] == 2000.0
    assert stored["_datapoints"] == [True]
    # A reconfiguration replaces what the request no longer names.
    alarms.put_metric_alarm(ctx, ALARM)
    (again,) = alarms.describe_alarms(ctx, {"AlarmNames": ["busy"]})["MetricAlarms"]
    assert "AlarmDescription" not in again and again["StateValue"] == "ALARM"


STEP_POLICY = {
    **TARGET,
    "PolicyName": "out",
    "PolicyType": "StepScaling",
    "StepScalingPolicyConfiguration": {
        "AdjustmentType": "ChangeInCapacity",
        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
    },
}


def test_racing_puts_of_a_new_scaling_policy_agree_on_its_arn(ctx: Context) -> None:
    """The ARN PutScalingPolicy answers is what an alarm's AlarmActions name: a second
    server's Put of the same new policy must not replace it with another."""
    answers: list[str] = []
    racing, wrapper = _interleaved(
        ctx,
        kinds.SCALING_POLICY,
        child_key(RESOURCE_ID, "out"),
        lambda: answers.append(scaling_policies.put_scaling_policy(ctx, STEP_POLICY)["PolicyARN"]),
    )
    changed = {
        **STEP_POLICY,
        "StepScalingPolicyConfiguration": {
            **STEP_POLICY["StepScalingPolicyConfiguration"],
            "Cooldown": 30,
        },
    }
    mine = scaling_policies.put_scaling_policy(racing, changed)["PolicyARN"]
    assert wrapper.interleaved
    (stored,) = scaling_policies.describe_scaling_policies(ctx, {"ServiceNamespace": "sagemaker"})[
        "ScalingPolicies"
    ]
    assert mine == answers[0] == stored["PolicyARN"]
    assert stored["StepScalingPolicyConfiguration"]["Cooldown"] == 30  # the later Put's


SCHEDULE = {
    **TARGET,
    "ScheduledActionName": "nightly",
    "Schedule": "rate(1 hour)",
    "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 2},
}
ACTION_KEY = child_key(RESOURCE_ID, "nightly")


def test_put_scheduled_action_keeps_another_puts_members(ctx: Context) -> None:
    """A Put naming only some members keeps the others: those stored when it writes."""
    scheduled_actions.put_scheduled_action(ctx, SCHEDULE)
    racing, wrapper = _interleaved(
        ctx,
        kinds.SCHEDULED_ACTION,
        ACTION_KEY,
        lambda: scheduled_actions.put_scheduled_action(
            ctx,
            {
                **TARGET,
                "ScheduledActionName": "nightly",
                "ScalableTargetAction": {"MinCapacity": 3, "MaxCapacity": 4},
            },
        ),
    )
    scheduled_actions.put_scheduled_action(
        racing, {**TARGET, "ScheduledActionName": "nightly", "Schedule": "rate(2 hours)"}
    )
    assert wrapper.interleaved
    (stored,) = scheduled_actions.describe_scheduled_actions(
        ctx, {"ServiceNamespace": "sagemaker"}
    )["ScheduledActions"]
    assert stored["Schedule"] == "rate(2 hours)"
    assert stored["ScalableTargetAction"] == {"MinCapacity": 3, "MaxCapacity": 4}


def test_put_scheduled_action_keeps_the_controllers_record_of_its_last_run(
    ctx: Context,
) -> None:
    """The controller notes when it fired an action (`_last_run`), so it never fires the
    same occurrence twice; a Put meanwhile must not drop that note."""
    scheduled_actions.put_scheduled_action(ctx, SCHEDULE)
    racing, wrapper = _interleaved(
        ctx,
        kinds.SCHEDULED_ACTION,
        ACTION_KEY,
        # as controllers/autoscaling.py notes a run
        lambda: ctx.store.modify(
            kinds.SCHEDULED_ACTION, ACTION_KEY, lambda a: {**a, "_last_run": 5000.0}
        ),
    )
    scheduled_actions.put_scheduled_action(racing, {**SCHEDULE, "Schedule": "rate(2 hours)"})
    assert wrapper.interleaved
    stored = ctx.store.get(kinds.SCHEDULED_ACTION, ACTION_KEY)
    assert stored is not None
    assert stored["Schedule"] == "rate(2 hours)" and stored["_last_run"] == 5000.0


def test_a_delete_right_after_a_create_leaves_no_tags_to_the_next_of_the_name(
    ctx: Context,
) -> None:
    arn = ctx.arn("model", "iris")

    def record() -> Record:
        return {"ModelName": "iris", "ModelArn": arn, "_arn": arn}

    racing, wrapper = _interleaved(
        ctx,
        kinds.MODEL,
        "iris",
        lambda: models.delete_model(ctx, {"ModelName": "iris"}),
        when="after",
    )
    create(racing, kinds.MODEL, "model", "iris", record(), [{"Key": "team", "Value": "a"}])
    assert wrapper.interleaved
    assert ctx.store.get(kinds.MODEL, "iris") is None
    create(ctx, kinds.MODEL, "model", "iris", record(), None)
    assert ctx.store.tags(arn) == {}


def test_a_create_right_after_a_delete_keeps_its_tags(ctx: Context) -> None:
    """Another server creates the name again the moment a delete removed the record: the
    delete's tags go with its record, not with the new resource's."""
    arn = ctx.arn("model", "iris")
    record = {"ModelName": "iris", "ModelArn": arn, "_arn": arn}
    create(ctx, kinds.MODEL, "model", "iris", record, [{"Key": "team", "Value": "a"}])
    racing, wrapper = _interleaved(
        ctx,
        kinds.MODEL,
        "iris",
        lambda: create(ctx, kinds.MODEL, "model", "iris", record, [{"Key": "team", "Value": "b"}]),
        when="after",
    )
    models.delete_model(racing, {"ModelName": "iris"})
    assert wrapper.interleaved
    assert ctx.store.get(kinds.MODEL, "iris") is not None
    assert ctx.store.tags(arn) == {"team": "b"}
