"""The endpoint controller's health path over fake instances: a hung instance is condemned
after the configured number of missed pings, killed and replaced, and the request it held
is answered elsewhere; a dead instance is replaced while requests wait for it. The real
store, control-plane operations and router; only the instances are fake
(tests/support/in_process.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.support.fake_backend import Plan
from tests.support.in_process import running_controller


def test_a_hung_instance_is_condemned_after_missed_pings_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "modelhost.controllers.endpoints")

    async def main() -> None:
        # A model timeout far past the pings' bound: the request must come back because
        # the hung instance was killed, not because it timed out.
        async with running_controller(tmp_path, model_timeout_s=30.0, ping_misses=3) as h:
            h.create_model("m")
            await h.deployed("ep", {"a": ("m", 2, 1.0)})
            for instance in h.backend.instances:
                instance.hold()
            first = asyncio.create_task(h.invoke("ep"))
            await h.until(
                lambda: sum(i.in_flight for i in h.backend.instances) == 1,
                "first request in flight",
            )
            busy, hung = sorted(h.backend.instances, key=lambda i: -i.in_flight)
            hung.release()
            hung.hang()
            held = asyncio.create_task(h.invoke("ep"))  # least busy: the hung one
            await h.until(lambda: hung.killed, "hung instance killed")
            busy.release()
            answers = await asyncio.gather(first, held)
            assert hung.served == 0
            assert hung.spec.instance_id.encode() not in {a.body for a in answers}
            await h.until(lambda: len(h.backend.alive()) == 2, "replacement started")
            replacement = h.backend.instances[2]
            assert replacement.spec.instance_id == "ep-a-3"
            pool = h.router.deployments["ep"].variants["a"]
            assert [r.instance for r in pool.available()] == [busy, replacement]
            await h.until(
                lambda: h.endpoint("ep")["ProductionVariants"][0]["CurrentInstanceCount"] == 2,
                "DescribeEndpoint counts the replacement",
            )
            assert h.endpoint("ep")["EndpointStatus"] == "InService"
            served = {(await h.invoke("ep")).body for _ in range(20)}
            assert served == {busy.spec.instance_id.encode(), b"ep-a-3"}
            condemned.append(hung.spec.instance_id)

    condemned: list[str] = []
    asyncio.run(main())
    logged = [r.getMessage() for r in caplog.records if "killing and replacing" in r.getMessage()]
    assert logged == [
        f"endpoint ep: instance {condemned[0]} missed 3 pings in a row "
        "(0.1 s each); killing and replacing it"
    ]


def test_an_instance_that_answers_pings_again_is_not_condemned(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_controller(tmp_path, ping_misses=1000) as h:
            h.create_model("m")
            await h.deployed("ep", {"a": ("m", 1, 1.0)})
            (instance,) = h.backend.instances
            instance.hang()
            (replica,) = h.router.deployments["ep"].replicas()
            await h.until(lambda: replica.missed_pings >= 2, "pings missed")
            instance.resume()
            await h.until(lambda: replica.missed_pings == 0, "pings answered again")
            assert not instance.killed and len(h.backend.instances) == 1
            assert (await h.invoke("ep")).body == b"ep-a-1"

    asyncio.run(main())


def test_requests_wait_while_a_dead_instance_is_replaced(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_controller(tmp_path) as h:
            h.create_model("m")
            await h.deployed("ep", {"a": ("m", 1, 1.0)})
            (dead,) = h.backend.instances
            dead.die()
            # Refused at once, then waiting (within the model timeout) for the controller
            # to notice the death and start another.
            answers = await asyncio.gather(*(h.invoke("ep") for _ in range(3)))
            assert [a.body for a in answers] == [b"ep-a-2"] * 3
            assert [i.spec.instance_id for i in h.backend.alive()] == ["ep-a-2"]
            await h.until(
                lambda: h.endpoint("ep")["ProductionVariants"][0]["CurrentInstanceCount"] == 1,
                "DescribeEndpoint counts the replacement",
            )

    asyncio.run(main())


def test_a_replacement_that_is_slow_to_start_is_waited_for(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_controller(tmp_path) as h:
            h.create_model("m")
            await h.deployed("ep", {"a": ("m", 1, 1.0)})
            h.backend.plan = lambda spec: Plan(ready_after_s=0.2)
            h.backend.instances[0].die()
            answer = await h.invoke("ep")
            assert answer.body == b"ep-a-2"
            assert h.backend.instances[1].pings >= 2  # it said 503 before it said 200

    asyncio.run(main())
