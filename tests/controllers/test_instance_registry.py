"""The instance registry over a real PostgreSQL store, two servers' registries in one event
loop: what one router serves reaches the other's shared view with its instance tokens, a
former owner's instances leave rotation, removal and a reused port are followed, and a
store no other server can share publishes nothing. The instances are fake
(tests/support/fake_backend.py): real sockets that check their token."""

from __future__ import annotations

import asyncio
from pathlib import Path

from modelhost.catalog import get_instance_type
from modelhost.controllers import ROUTES, InstanceRegistry
from modelhost.instances import InstanceSpec
from modelhost.router import Deployment, Invocation, Replica, Router, VariantPool
from modelhost.storage import Ownership, SqliteStateStore, lease
from modelhost.storage.postgres_state import PostgresStateStore
from tests.support.fake_backend import FakeBackend
from tests.support.postgres import PostgresServer

_REQUEST = Invocation(b"{}", "application/json", None, None, None)


def _spec(instance_id: str) -> InstanceSpec:
    kind = get_instance_type("ml.m5.large")
    assert kind is not None
    return InstanceSpec(instance_id, Path(), "python", kind)


def _deployment(name: str, replicas: list[Replica]) -> Deployment:
    return Deployment(name, 1, {"v": VariantPool("v", 1.0, replicas)})


def test_a_served_deployment_reaches_the_other_servers_router(postgres: PostgresServer) -> None:
    store = PostgresStateStore(postgres.new_database())

    async def main() -> None:
        backend = FakeBackend()
        router_a, router_b = Router(5.0), Router(5.0)
        owner_a, owner_b = Ownership(store, "a", 30), Ownership(store, "b", 30)
        registry_a = InstanceRegistry(store, router_a, owner_a)
        registry_b = InstanceRegistry(store, router_b, owner_b)
        assert await owner_a.claim([lease("endpoint", "ep")]) == {"endpoint:ep"}
        first = await backend.start(_spec("ep-v-1"))
        router_a.deployments["ep"] = _deployment("ep", [Replica(first, "v")])

        await registry_a.step()
        await registry_b.step()
        shared = router_b.shared["ep"]
        assert [r.address for r in shared.replicas()] == [first.address]
        assert "ep" not in router_a.shared  # a server never shares with itself
        # B's router reaches A's instance with its token (the fake refuses without it).
        assert (await router_b.invoke(shared, _REQUEST)).body == b"ep-v-1"

        # A second instance on A: B routes to both.
        second = await backend.start(_spec("ep-v-2"))
        router_a.deployments["ep"].variants["v"].replicas.append(Replica(second, "v"))
        await registry_a.step()
        await registry_b.step()
        shared = router_b.shared["ep"]
        assert {r.address for r in shared.replicas()} == {first.address, second.address}
        served = {(await router_b.invoke(shared, _REQUEST)).body for _ in range(20)}
        assert served == {b"ep-v-1", b"ep-v-2"}

        # A's lease taken by B (A died): A's instances leave B's rotation; a request waits.
        store.release(["endpoint:ep"], "a")
        assert await owner_b.claim(["endpoint:ep"]) == {"endpoint:ep"}
        await registry_b.step()
        assert router_b.shared["ep"].serving() == 0
        waiting = asyncio.create_task(router_b.invoke(router_b.shared["ep"], _REQUEST))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        # B's own deployment of it: the waiting request goes there, B's record replaces A's.
        mine = await backend.start(_spec("ep-v-3"))
        router_b.deployments["ep"] = _deployment("ep", [Replica(mine, "v")])
        router_b.changed()
        assert (await waiting).body == b"ep-v-3"
        await registry_b.step()
        assert "ep" not in router_b.shared
        assert store.get(ROUTES, "ep")["holder"] == "b"  # type: ignore[index]

        # Gone from B's router (and A let go): its record is removed.
        del router_b.deployments["ep"]
        del router_a.deployments["ep"]
        await registry_b.step()
        assert store.get(ROUTES, "ep") is None
        await registry_a.step()
        assert router_a.shared == {}
        for instance in backend.instances:
            await instance.stop()
        router_a.close()
        router_b.close()

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_an_address_now_this_servers_own_is_never_another_servers(
    postgres: PostgresServer,
) -> None:
    store = PostgresStateStore(postgres.new_database())

    async def main() -> None:
        backend = FakeBackend()
        router_a, router_b = Router(5.0), Router(5.0)
        owner_a = Ownership(store, "a", 30)
        registry_a = InstanceRegistry(store, router_a, owner_a)
        registry_b = InstanceRegistry(store, router_b, Ownership(store, "b", 30))
        await owner_a.claim(["endpoint:ep"])
        instance = await backend.start(_spec("ep-v-1"))
        router_a.deployments["ep"] = _deployment("ep", [Replica(instance, "v")])
        await registry_a.step()
        # B runs an instance of another endpoint on that address now (A's record is stale).
        router_b.deployments["other"] = _deployment("other", [Replica(instance, "v")])
        await registry_b.step()
        assert router_b.shared["ep"].replicas() == []
        await instance.stop()
        router_a.close()
        router_b.close()

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_a_store_no_other_server_shares_publishes_nothing(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")

    async def main() -> None:
        backend = FakeBackend()
        router = Router(5.0)
        instance = await backend.start(_spec("ep-v-1"))
        router.deployments["ep"] = _deployment("ep", [Replica(instance, "v")])
        await InstanceRegistry(store, router, Ownership(store, "a", 30)).run()  # returns
        assert store.list(ROUTES) == []
        await instance.stop()
        router.close()

    try:
        asyncio.run(main())
    finally:
        store.close()
