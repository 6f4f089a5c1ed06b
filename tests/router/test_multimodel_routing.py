"""Multi-model routing against fake instances that speak the `/models` contract: the
instance a model's requests go to, and which model is unloaded when an instance is full.
The models' folders are unpacked beforehand, so the router only loads and invokes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from modelhost.catalog import get_instance_type
from modelhost.instances import InstanceSpec
from modelhost.router import Deployment, Invocation, ModelSource, Replica, Router, VariantPool
from modelhost.router.multimodel import local_name
from tests.support.fake_backend import FakeBackend, FakeInstance


def _request(target: str) -> Invocation:
    return Invocation(b"{}", "application/json", None, None, None, target_model=target)


def run(
    tmp_path: Path,
    count: int,
    test: Callable[[Router, Deployment, list[FakeInstance]], Awaitable[None]],
    max_loaded: int | None = None,
) -> None:
    for index in range(30):
        (tmp_path / local_name(f"m{index}.tar.gz")).mkdir()

    async def main() -> None:
        backend = FakeBackend()
        router = Router(5.0)
        type_ = get_instance_type("ml.m5.large")
        assert type_ is not None
        instances = [
            await backend.start(InstanceSpec(f"i-{n}", tmp_path, "python", type_))
            for n in range(count)
        ]
        source = ModelSource("s3://b/p/", tmp_path, None, 1 << 20, max_loaded)  # type: ignore[arg-type]
        pool = VariantPool("v", 1.0, [Replica(i, "v") for i in instances], models=source)
        deployment = Deployment("ep", 1, {"v": pool})
        router.deployments["ep"] = deployment
        try:
            await test(router, deployment, instances)
        finally:
            await backend.end_all()
            router.close()

    asyncio.run(main())


def test_a_full_instance_unloads_its_least_recently_used_model(tmp_path: Path) -> None:
    async def test(router: Router, deployment: Deployment, instances: list[FakeInstance]) -> None:
        (instance,) = instances
        instance.model_capacity = 2
        for target in ("m0.tar.gz", "m1.tar.gz", "m2.tar.gz"):  # m2 does not fit: m0 goes
            await router.invoke(deployment, _request(target))
        assert instance.unloads == [local_name("m0.tar.gz")]
        await router.invoke(deployment, _request("m1.tar.gz"))  # a hit: m1 is recent now
        await router.invoke(deployment, _request("m0.tar.gz"))  # m2 is the LRU one
        assert instance.unloads == [local_name("m0.tar.gz"), local_name("m2.tar.gz")]
        assert set(instance.models) == {local_name("m0.tar.gz"), local_name("m1.tar.gz")}
        assert instance.models[local_name("m1.tar.gz")] == str(tmp_path / local_name("m1.tar.gz"))

    run(tmp_path, 1, test)


def test_a_models_requests_go_to_the_instance_that_has_it(tmp_path: Path) -> None:
    async def test(router: Router, deployment: Deployment, instances: list[FakeInstance]) -> None:
        answers = {(await router.invoke(deployment, _request("m0.tar.gz"))).body for _ in range(10)}
        assert len(answers) == 1  # one instance served all ten
        assert sum(len(i.loads) for i in instances) == 1  # and loaded it once
        for index in range(1, 20):
            await router.invoke(deployment, _request(f"m{index}.tar.gz"))
        # Models loaded nowhere are shared out, not all loaded on one instance.
        assert all(i.loads for i in instances)
        assert sum(len(i.loads) for i in instances) == 20

    run(tmp_path, 2, test)


def test_concurrent_first_requests_load_a_model_once(tmp_path: Path) -> None:
    async def test(router: Router, deployment: Deployment, instances: list[FakeInstance]) -> None:
        await asyncio.gather(*(router.invoke(deployment, _request("m5.tar.gz")) for _ in range(8)))
        assert sum(len(i.loads) for i in instances) == 1

    run(tmp_path, 2, test)


def test_a_count_bound_keeps_at_most_that_many_loaded(tmp_path: Path) -> None:
    async def test(router: Router, deployment: Deployment, instances: list[FakeInstance]) -> None:
        (instance,) = instances
        for index in range(6):
            await router.invoke(deployment, _request(f"m{index}.tar.gz"))
            assert len(instance.models) <= 3
        assert len(instance.unloads) == 3

    run(tmp_path, 1, test, max_loaded=3)
