"""The router against fake instances (tests/support/fake_backend.py) over real HTTP: which
instance a request goes to, the retry when an instance's connection fails, and the wait
for an instance while none is ready. No server process and no controller: the tests build
the deployments the controller would publish."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from modelhost.catalog import get_instance_type
from modelhost.errors import ServiceUnavailable
from modelhost.instances import InstanceSpec
from modelhost.router import Deployment, Invocation, Replica, Router, VariantPool
from tests.support.fake_backend import FakeBackend, FakeInstance

T = TypeVar("T")
REQUEST = Invocation(b"{}", "application/json", None, None, None)


class Fleet:
    def __init__(self, backend: FakeBackend, router: Router) -> None:
        self.backend = backend
        self.router = router
        self._count = 0

    async def instances(self, count: int) -> list[FakeInstance]:
        started = []
        for _ in range(count):
            self._count += 1
            type_ = get_instance_type("ml.m5.large")
            assert type_ is not None
            spec = InstanceSpec(f"i-{self._count}", Path("/nonexistent"), "python", type_)
            started.append(await self.backend.start(spec))
        return started

    def publish(self, variants: dict[str, tuple[float, list[FakeInstance]]]) -> Deployment:
        deployment = Deployment(
            "ep",
            1,
            {
                name: VariantPool(name, weight, [Replica(i, name) for i in instances])
                for name, (weight, instances) in variants.items()
            },
        )
        self.router.deployments["ep"] = deployment
        self.router.changed()
        return deployment


def run(test: Callable[[Fleet], Awaitable[T]], model_timeout_s: float = 5.0) -> T:
    async def main() -> T:
        backend = FakeBackend()
        router = Router(model_timeout_s)
        try:
            return await test(Fleet(backend, router))
        finally:
            for instance in backend.instances:
                instance.release()
            await backend.end_all()
            router.close()

    return asyncio.run(main())


def test_each_request_goes_to_the_instance_with_the_fewest_outstanding() -> None:
    async def test(fleet: Fleet) -> None:
        instances = await fleet.instances(3)
        deployment = fleet.publish({"a": (1.0, instances)})
        for instance in instances:
            instance.hold()
        tasks = []
        for sent in range(1, 10):
            tasks.append(asyncio.create_task(fleet.router.invoke(deployment, REQUEST)))
            await _until(lambda: sum(i.in_flight for i in instances) == len(tasks))
            # Least outstanding: never two more on one instance than on another.
            counts = sorted(i.in_flight for i in instances)
            assert counts[-1] - counts[0] <= 1, (sent, counts)
        assert [i.in_flight for i in instances] == [3, 3, 3]
        for instance in instances:
            instance.release()
        answers = await asyncio.gather(*tasks)
        assert Counter(a.body for a in answers) == {b"i-1": 3, b"i-2": 3, b"i-3": 3}

    run(test)


def test_variants_share_requests_by_weight() -> None:
    async def test(fleet: Fleet) -> None:
        heavy, light, off = await fleet.instances(3)
        deployment = fleet.publish(
            {"heavy": (3.0, [heavy]), "light": (1.0, [light]), "off": (0.0, [off])}
        )
        random.seed(20240601)
        answers = [await fleet.router.invoke(deployment, REQUEST) for _ in range(400)]
        split = Counter(a.variant for a in answers)
        # 300 / 100 expected; a binomial(400, 0.25) lies in 100 ± 30 with p > 0.998.
        assert 70 <= split["light"] <= 130, split
        assert split["heavy"] == 400 - split["light"]
        assert "off" not in split and off.received == 0
        assert heavy.served == split["heavy"] and light.served == split["light"]

    run(test)


def test_a_variant_of_weight_zero_serves_when_no_other_can() -> None:
    async def test(fleet: Fleet) -> None:
        (only,) = await fleet.instances(1)
        deployment = fleet.publish({"off": (0.0, [only])})
        assert (await fleet.router.invoke(deployment, REQUEST)).variant == "off"

    run(test)


@pytest.mark.parametrize("when", ["before the request", "while it holds the request"])
def test_a_request_whose_instance_dies_is_retried_on_another(when: str) -> None:
    async def test(fleet: Fleet) -> None:
        dying, other = await fleet.instances(2)
        deployment = fleet.publish({"a": (1.0, [dying, other])})
        to_dying, to_other = deployment.replicas()
        # A request held on `other` makes `dying` the least busy: the next one goes there.
        other.hold()
        to_dying.healthy = False
        first = asyncio.create_task(fleet.router.invoke(deployment, REQUEST))
        await _until(lambda: other.in_flight == 1)
        to_dying.healthy = True
        if when == "before the request":
            dying.die()
        else:
            dying.hold()
        second = asyncio.create_task(fleet.router.invoke(deployment, REQUEST))
        if when == "while it holds the request":
            await _until(lambda: dying.in_flight == 1)
            dying.die()  # the connection drops under the request
        await _until(lambda: other.in_flight == 2)
        other.release()
        answers = await asyncio.gather(first, second)
        assert [a.body for a in answers] == [b"i-2", b"i-2"]
        assert not to_dying.healthy  # out of rotation until it answers a ping again
        assert dying.served == 0 and to_other.healthy

    run(test)


def test_a_request_waits_for_an_instance_while_the_deployment_starts() -> None:
    async def test(fleet: Fleet) -> None:
        deployment = fleet.publish({"a": (1.0, [])})
        waiting = asyncio.create_task(fleet.router.invoke(deployment, REQUEST))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        (instance,) = await fleet.instances(1)
        # The controller publishes a new deployment (a restart, an update) and says so.
        fleet.publish({"a": (1.0, [instance])})
        assert (await waiting).body == b"i-1"

    run(test)


def test_a_request_waits_while_the_only_instance_is_out_of_rotation() -> None:
    async def test(fleet: Fleet) -> None:
        (instance,) = await fleet.instances(1)
        deployment = fleet.publish({"a": (1.0, [instance])})
        (replica,) = deployment.replicas()
        replica.healthy = False
        waiting = asyncio.create_task(fleet.router.invoke(deployment, REQUEST))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done() and instance.received == 0
        replica.healthy = True  # it answered a ping again
        fleet.router.changed()
        assert (await waiting).body == b"i-1"

    run(test)


def test_no_instance_within_the_model_timeout_is_a_retriable_503() -> None:
    async def test(fleet: Fleet) -> None:
        deployment = fleet.publish({"a": (1.0, [])})
        with pytest.raises(ServiceUnavailable) as raised:
            await fleet.router.invoke(deployment, REQUEST)
        assert raised.value.status == 503
        assert "No instance of endpoint ep became ready within 0.2 s" in str(raised.value)

    run(test, model_timeout_s=0.2)


def test_requests_without_the_instance_token_are_refused() -> None:
    """The fake keeps the real instances' contract: only the router's client, which sends
    the token it was granted, gets through."""

    async def test(fleet: Fleet) -> None:
        (instance,) = await fleet.instances(1)
        host, port = instance.address
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        status = await reader.readline()
        writer.close()
        await writer.wait_closed()
        assert status.startswith(b"HTTP/1.1 403")
        assert instance.refused == 1 and instance.pings == 0
        assert await fleet.router.ping(Replica(instance, "a"), 1.0)
        assert instance.pings == 1

    run(test)


async def _until(check: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not check():
        assert loop.time() < deadline, "never happened"
        await asyncio.sleep(0.002)
