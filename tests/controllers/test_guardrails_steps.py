"""How a DeploymentConfig's sizes become traffic steps and batches."""

from __future__ import annotations

import pytest

from modelhost.controllers.endpoints.guardrails import Step, batch_size, blue_green_steps


def _policy(routing: dict, termination: int = 0) -> dict:
    return {
        "TrafficRoutingConfiguration": {"WaitIntervalInSeconds": 5, **routing},
        "TerminationWaitInSeconds": termination,
    }


def test_all_at_once_is_one_step_baked_for_the_termination_wait() -> None:
    assert blue_green_steps(_policy({"Type": "ALL_AT_ONCE"}, 7), 3) == [Step(1.0, 7.0)]


@pytest.mark.parametrize(
    ("size", "instances", "share"),
    [
        ({"Type": "INSTANCE_COUNT", "Value": 1}, 4, 0.25),
        ({"Type": "CAPACITY_PERCENT", "Value": 10}, 4, 0.1),
    ],
)
def test_a_canary_takes_its_capacity_share_then_the_rest(
    size: dict, instances: int, share: float
) -> None:
    steps = blue_green_steps(_policy({"Type": "CANARY", "CanarySize": size}, 2), instances)
    assert steps == [Step(share, 5.0), Step(1.0, 2.0)]


def test_a_canary_as_large_as_the_fleet_is_all_at_once() -> None:
    size = {"Type": "INSTANCE_COUNT", "Value": 3}
    assert blue_green_steps(_policy({"Type": "CANARY", "CanarySize": size}), 2) == [Step(1.0, 0.0)]


def test_linear_steps_until_all_traffic() -> None:
    size = {"Type": "CAPACITY_PERCENT", "Value": 30}
    steps = blue_green_steps(_policy({"Type": "LINEAR", "LinearStepSize": size}), 4)
    assert [s.share for s in steps] == pytest.approx([0.3, 0.6, 0.9, 1.0])
    assert [s.bake_s for s in steps] == [5.0, 5.0, 5.0, 0.0]


def test_batches_are_at_least_one_instance() -> None:
    assert batch_size({"Type": "INSTANCE_COUNT", "Value": 2}, 5) == 2
    assert batch_size({"Type": "CAPACITY_PERCENT", "Value": 50}, 5) == 2
    assert batch_size({"Type": "CAPACITY_PERCENT", "Value": 5}, 5) == 1
