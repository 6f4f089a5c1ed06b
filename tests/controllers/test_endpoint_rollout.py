"""The endpoint controller's rollouts over fake instances: a blue/green update keeps the
old fleet serving until the new one is ready, a failed update rolls back, and a delete
drains the requests in flight. The real store, control-plane operations and router; only
the instances are fake (tests/support/in_process.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelhost.domain import kinds
from modelhost.instances import InstanceSpec
from tests.support.fake_backend import FakeBackend, Plan
from tests.support.in_process import running_controller


def _by_generation(new: Plan) -> FakeBackend:
    """Instances of models whose environment says GEN=2 start by `new`; others at once."""
    return FakeBackend(lambda spec: new if spec.environment.get("GEN") == "2" else Plan())


def _ids(instances: list) -> set[bytes]:
    return {i.spec.instance_id.encode() for i in instances}


def test_an_update_serves_from_the_old_fleet_until_the_new_one_is_ready(tmp_path: Path) -> None:
    async def main() -> None:
        backend = _by_generation(Plan(ready_after_s=None))  # ready when the test says
        async with running_controller(tmp_path, backend) as h:
            h.create_model("m1")
            h.create_model("m2", {"GEN": "2"})
            await h.deployed("ep", {"a": ("m1", 2, 1.0)})
            old = list(backend.instances)
            h.create_config("ep-2", {"a": ("m2", 2, 1.0)})
            h.call("UpdateEndpoint", EndpointName="ep", EndpointConfigName="ep-2")
            await h.until(lambda: len(backend.instances) == 4, "new instances started")
            new = backend.instances[2:]
            # Starting, not ready: every request still goes to the old fleet.
            answers = [await h.invoke("ep") for _ in range(10)]
            assert {a.body for a in answers} <= _ids(old)
            assert h.endpoint("ep")["EndpointStatus"] == "Updating"
            # A request in flight on the old fleet when the new one takes over finishes.
            for instance in old:
                instance.hold()
            in_flight = asyncio.create_task(h.invoke("ep"))
            await h.until(lambda: sum(i.in_flight for i in old) == 1, "request in flight")
            new[0].become_ready()
            for _ in range(20):
                await asyncio.sleep(0.01)
            assert h.endpoint("ep")["EndpointStatus"] == "Updating"  # all must be ready
            new[1].become_ready()
            await h.until(lambda: h.router.deployments["ep"].generation == 2, "published")
            assert {(await h.invoke("ep")).body for _ in range(10)} <= _ids(new)
            # The old fleet drains: stopped only once its request is answered, and the
            # update ends (InService) then.
            assert not any(i.stopped for i in old)
            assert h.endpoint("ep")["EndpointStatus"] == "Updating"
            for instance in old:
                instance.release()
            assert (await in_flight).body in _ids(old)
            described = await h.until_status("ep", "InService")
            assert described["EndpointConfigName"] == "ep-2"
            assert all(i.stopped and not i.killed for i in old)

    asyncio.run(main())


@pytest.mark.parametrize(
    "plan",
    [
        Plan(start_error="no room for the instance"),
        Plan(crash_on_start="model would not load"),
        Plan(ready_after_s=None),  # never answers /ping within the startup timeout
    ],
    ids=["cannot start", "dies starting", "never ready"],
)
def test_a_failed_update_rolls_back_to_the_fleet_that_serves(tmp_path: Path, plan: Plan) -> None:
    async def main() -> None:
        backend = _by_generation(plan)
        async with running_controller(tmp_path, backend, startup_timeout_s=0.3) as h:
            h.create_model("m1")
            h.create_model("m2", {"GEN": "2"})
            await h.deployed("ep", {"a": ("m1", 2, 1.0)})
            old = list(backend.instances)
            h.create_config("ep-2", {"a": ("m2", 1, 1.0)})
            h.call("UpdateEndpoint", EndpointName="ep", EndpointConfigName="ep-2")
            await h.until(lambda: "FailureReason" in h.endpoint("ep"), "update failed")
            described = h.endpoint("ep")
            assert described["EndpointStatus"] == "InService"
            assert described["EndpointConfigName"] == "ep"
            assert described["FailureReason"].startswith("Update failed: Instance ep-a-3")
            assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
            assert {(await h.invoke("ep")).body for _ in range(10)} <= _ids(old)
            assert all(i.is_alive() for i in old)
            assert all(not i.is_alive() for i in backend.instances[2:])
            # The restored desired state is what runs: nothing redeploys in a loop.
            for _ in range(10):
                await asyncio.sleep(0.02)
            assert len(backend.instances) == 2 + (plan.start_error is None)

    asyncio.run(main())


def test_delete_waits_for_the_requests_in_flight(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_controller(tmp_path) as h:
            h.create_model("m")
            await h.deployed("ep", {"a": ("m", 1, 1.0)})
            (instance,) = h.backend.instances
            instance.hold()
            requests = [asyncio.create_task(h.invoke("ep")) for _ in range(3)]
            await instance.until_in_flight(3)
            h.call("DeleteEndpoint", EndpointName="ep")
            await h.until(lambda: "ep" not in h.router.deployments, "unpublished")
            for _ in range(20):
                await asyncio.sleep(0.01)
            # Draining: not stopped, the record still there, while requests are held.
            assert not instance.stopped
            assert h.store.get(kinds.ENDPOINT, "ep")["EndpointStatus"] == "Deleting"
            instance.release()
            answers = await asyncio.gather(*requests)
            assert [a.body for a in answers] == [b"ep-a-1"] * 3
            await h.until(lambda: h.store.get(kinds.ENDPOINT, "ep") is None, "deleted")
            assert instance.stopped and not instance.killed and instance.served == 3

    asyncio.run(main())


def test_a_first_deployment_that_cannot_start_fails_the_endpoint(tmp_path: Path) -> None:
    def plan(spec: InstanceSpec) -> Plan:
        return Plan(crash_on_start="ImportError: no module named handler")

    async def main() -> None:
        async with running_controller(tmp_path, FakeBackend(plan)) as h:
            h.create_model("m")
            h.create_config("ep", {"a": ("m", 1, 1.0)})
            h.call("CreateEndpoint", EndpointName="ep", EndpointConfigName="ep")
            described = await h.until_status("ep", "Failed")
            assert "ImportError: no module named handler" in described["FailureReason"]
            assert "ep" not in h.router.deployments

    asyncio.run(main())
