"""The instance registry: which instances serve each endpoint, in the shared state store,
so any server sharing the store can route any endpoint's invocations.

Each endpoint's instances run on the one server that holds its lease
(:mod:`modelhost.storage.ownership`). That server publishes one record per endpoint it
serves (kind `ROUTES`): the holder, the deployment's generation and, per variant, its weight
and every ready instance's address and instance token (the token is what lets the router of
another server through the instance's check; the store is trusted with it as it is with
everything else). A record changes when an instance becomes ready or leaves (drained,
replaced, dead) and is removed when the endpoint stops being served here.

Every other server reads the records on a short period and keeps them as deployments in
`Router.shared`, which the invoke path reads from memory: no request touches the database.
A record whose holder no longer holds the endpoint's lease (its server died or let go) is
kept with its instances out of rotation, so requests wait, bounded by the model timeout,
for the new owner's instances instead of failing; the new owner's record replaces it. An
instance the router could not reach is out of rotation until it answers a ping. While the
store cannot be reached the last view stays: invocations go on to the instances it knows.

Why polling rather than LISTEN/NOTIFY: two small queries a period (`list` and `holders`),
through the same StateStore Protocol every store implements, no dedicated connection to keep
alive and re-listen on after the database comes back, and nothing missed while it was away
(a notification sent then is lost; a poll is not). The period bounds how late another server
hears of a change; a client sees it only when an instance appears or goes, never per request.

The record also carries the endpoint's inference components (`Router.components`, kept by
the component controller): per component, its variant, desired copy count, whether it may
scale out from zero, and each ready copy as an instance. Other servers keep them as
`Router.shared_components` with the same rules: a former owner's copies are out of
rotation, a component gone from the record is gone from the view (a request for it reads
the store once and is told it does not exist). Scaling out from zero stays with the owner:
another server answers a request at zero copies with a retriable 503 naming it.

Serverless variants are not shared: their instances start on demand on the server that runs
them, so an endpoint with one is served by its owner only, and another server answers with a
retriable 503 naming that server (`unshared`).

With a store no other server can share (the embedded SQLite file), nothing is published or
read: the loop returns at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelhost.catalog import InstanceType, get_instance_type
from modelhost.domain import kinds
from modelhost.instances import (
    InstanceSpec,
    ResourceUsage,
    grant_token,
    revoke_token,
    token_header,
)
from modelhost.router import (
    ComponentRoute,
    Deployment,
    Replica,
    Router,
    ServerlessPool,
    VariantPool,
)
from modelhost.storage import LoopStore, Ownership, Record, StateStore, StoreUnavailable, lease

log = logging.getLogger(__name__)

#: The kind of the records in the state store, one per served endpoint, by endpoint name.
ROUTES = "endpoint_route"
#: How often the records are read and this server's own are brought up to date.
PERIOD_S = 0.5
#: How long a ping to an instance out of rotation may take.
PING_TIMEOUT_S = 1.0


@dataclass(eq=False)
class SharedInstance:
    """An instance another server runs, as this server's router sees it: an address to send
    to. That server starts, checks and stops it; this one never does."""

    spec: InstanceSpec
    host: str
    port: int
    holder: str
    token: str | None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return None

    def usage(self) -> ResourceUsage | None:
        return None  # measured by the server that owns it

    def is_alive(self) -> bool:
        return True

    def failure_detail(self) -> str:
        return f"runs on modelhost server {self.holder}"

    async def wait_ready(self, timeout_s: float) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def kill(self) -> None:
        return None


def describe(
    name: str, holder: str, deployment: Deployment, components: list[ComponentRoute]
) -> Record:
    """The record another server routes `deployment` and its inference `components` from."""
    serverless = any(isinstance(p, ServerlessPool) for p in deployment.variants.values())
    variants = []
    if not serverless:
        for pool in deployment.variants.values():
            variants.append(
                {"name": pool.name, "weight": pool.weight, "instances": _instances(pool)}
            )
    return {
        "EndpointName": name,
        "holder": holder,
        "generation": deployment.generation,
        "asynchronous": deployment.asynchronous,
        "serverless": serverless,
        "variants": variants,
        "components": [
            {
                "name": route.name,
                "variant": route.variant,
                "desired": route.desired,
                "scalable_from_zero": route.scalable_from_zero,
                "instances": _instances(route.pool),
            }
            for route in sorted(components, key=lambda r: r.name)
        ],
    }


def _instances(pool: VariantPool) -> list[Record]:
    """A pool's ready instances as another server reaches them."""
    instances = []
    for replica in pool.replicas:
        if replica.draining:
            continue
        token = token_header(replica.address)
        host, port = replica.address
        instances.append(
            {
                "id": replica.instance.spec.instance_id,
                "type": replica.instance.spec.instance_type.name,
                "host": host,
                "port": port,
                "token": token[1] if token else None,
            }
        )
    return instances


_Key = tuple[str, int, str | None]


class InstanceRegistry:
    def __init__(self, store: StateStore, router: Router, ownership: Ownership) -> None:
        self.store = LoopStore(store)
        self.router = router
        self.ownership = ownership
        #: Endpoints another live server serves that cannot be routed from here (serverless),
        #: by name: the holder's server id.
        self.unshared: dict[str, str] = {}
        self._published: dict[str, Record] = {}  # what this server last put, by endpoint
        self._seen: dict[str, bytes] = {}  # each shared deployment's record as last built
        self._reachable = True

    async def run(self) -> None:
        if self.ownership.exclusive:
            return
        while True:
            try:
                await self.step()
                if not self._reachable:
                    log.info("instance registry: the state store answers again")
                    self._reachable = True
            except StoreUnavailable as exc:
                if self._reachable:
                    log.warning("instance registry: %s; routing on to the instances known", exc)
                    self._reachable = False
            except Exception:
                log.exception("instance registry pass failed; retrying")
            await asyncio.sleep(PERIOD_S)

    async def step(self) -> None:
        records = {r["EndpointName"]: r for r in await self.store.list(ROUTES)}
        await self._publish(records)
        others = {n: r for n, r in records.items() if r["holder"] != self.ownership.holder}
        holders = (
            await self.store.holders([lease(kinds.ENDPOINT, n) for n in others]) if others else {}
        )
        changed = False
        unshared: dict[str, str] = {}
        # A port this server's own instance has now is not another server's any more (a
        # stale record): the router's tokens go by address.
        local = {r.address for d in self.router.deployments.values() for r in d.replicas()}
        local.update(r.address for c in self.router.components.values() for r in c.pool.replicas)
        for name, record in others.items():
            live = holders.get(lease(kinds.ENDPOINT, name)) == record["holder"]
            if name in self.router.deployments:
                continue  # served here now: the record is a former owner's
            if record["serverless"]:
                if live:
                    unshared[name] = record["holder"]
                continue
            changed |= self._update(name, record, live, local)
        self.unshared.clear()
        self.unshared.update(unshared)
        for name in list(self.router.shared):
            if name in self.router.deployments or name not in others or others[name]["serverless"]:
                self._drop(name)
                changed = True
        if await self._ping_out_of_rotation(holders, others):
            changed = True
        if changed:
            self.router.changed()

    async def _publish(self, records: dict[str, Record]) -> None:
        """Bring this server's records to what its router serves. What the store holds is
        checked each pass, so a record another server overwrote or removed is put again."""
        me = self.ownership.holder
        for name, record in list(self._published.items()):
            stored = records.get(name)
            if stored is None or stored != record:
                del self._published[name]
        for name, deployment in list(self.router.deployments.items()):
            if not self.ownership.owns(lease(kinds.ENDPOINT, name)):
                continue
            components = [r for r in self.router.components.values() if r.endpoint == name]
            record = describe(name, me, deployment, components)
            if self._published.get(name) != record:
                await self.store.put(ROUTES, name, record)
                self._published[name] = record
        for name, stored in records.items():
            if stored["holder"] == me and name not in self.router.deployments:
                await self.store.delete(ROUTES, name)
                self._published.pop(name, None)

    def _update(self, name: str, record: Record, live: bool, local: set[tuple[str, int]]) -> bool:
        """Build (or keep) the shared deployment of `record`; True when it changed."""

        def reachable(pool: Record) -> Record:
            instances = [i for i in pool["instances"] if (i["host"], i["port"]) not in local]
            return {**pool, "instances": instances}

        record = {
            **record,
            "variants": [reachable(v) for v in record["variants"]],
            "components": [reachable(c) for c in record.get("components", [])],
        }
        fingerprint = orjson.dumps([record, live], option=orjson.OPT_SORT_KEYS)
        if self._seen.get(name) == fingerprint:
            return False
        self._seen[name] = fingerprint
        old = self.router.shared.get(name)
        previous: dict[_Key, Replica] = {}
        if old is not None:
            previous = {_key(r): r for r in old.replicas()}
        previous.update((_key(r), r) for c in self._components_of(name) for r in c.pool.replicas)
        kept: set[_Key] = set()

        def replicas(pool: Record, variant: str) -> list[Replica]:
            found = []
            for entry in pool["instances"]:
                key: _Key = (entry["host"], entry["port"], entry["token"])
                replica = previous.get(key)
                if replica is None:
                    replica = Replica(_shared_instance(entry, record["holder"]), variant)
                    if entry["token"] is not None:
                        grant_token(replica.address, entry["token"])
                # A former owner's instances are out of rotation: requests wait for the
                # new owner's rather than go to instances that are leaving or gone.
                replica.healthy = replica.healthy and live
                kept.add(key)
                found.append(replica)
            return found

        variants = {
            v["name"]: VariantPool(v["name"], v["weight"], replicas(v, v["name"]))
            for v in record["variants"]
        }
        components = {
            c["name"]: ComponentRoute(
                c["name"],
                name,
                c["variant"],
                VariantPool(c["variant"], 1.0, replicas(c, c["variant"])),
                desired=c["desired"],
                scalable_from_zero=c["scalable_from_zero"],
                owner=record["holder"],
            )
            for c in record["components"]
        }
        for key, replica in previous.items():
            if key not in kept:
                self._forget(replica)
        self.router.shared[name] = Deployment(
            name, record["generation"], variants, asynchronous=record["asynchronous"]
        )
        for component in self._components_of(name):
            if component.name not in components:
                del self.router.shared_components[component.name]
        self.router.shared_components.update(components)
        return True

    def _components_of(self, endpoint: str) -> list[ComponentRoute]:
        return [c for c in self.router.shared_components.values() if c.endpoint == endpoint]

    async def _ping_out_of_rotation(
        self, holders: dict[str, str], others: dict[str, Record]
    ) -> bool:
        """Put back in rotation the instances of live records that answer a ping again."""
        waiting = [
            replica
            for name, deployment in self.router.shared.items()
            if holders.get(lease(kinds.ENDPOINT, name)) == others[name]["holder"]
            for replica in [
                *deployment.replicas(),
                *(r for c in self._components_of(name) for r in c.pool.replicas),
            ]
            if not replica.healthy
        ]
        if not waiting:
            return False
        answers = await asyncio.gather(*(self.router.ping(r, PING_TIMEOUT_S) for r in waiting))
        back = False
        for replica, answered in zip(waiting, answers, strict=True):
            if answered:
                replica.healthy = back = True
        return back

    def _drop(self, name: str) -> None:
        deployment = self.router.shared.pop(name, None)
        self._seen.pop(name, None)
        if deployment is not None:
            for replica in deployment.replicas():
                self._forget(replica)
        for component in self._components_of(name):
            del self.router.shared_components[component.name]
            for replica in component.pool.replicas:
                self._forget(replica)

    def _forget(self, replica: Replica) -> None:
        self.router.forget(replica)
        token = _key(replica)[2]
        if token is not None:
            revoke_token(replica.address, token)


def _key(replica: Replica) -> _Key:
    instance = replica.instance
    assert isinstance(instance, SharedInstance)
    return (instance.host, instance.port, instance.token)


def _shared_instance(entry: dict[str, Any], holder: str) -> SharedInstance:
    kind = get_instance_type(entry["type"]) or InstanceType(entry["type"], 0, 0.0, 0, None, 0.0)
    spec = InstanceSpec(entry["id"], Path(), "", kind)
    return SharedInstance(spec, entry["host"], entry["port"], holder, entry["token"])
