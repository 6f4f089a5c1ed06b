"""Which server owns a unit of work: leases in the state store.

Several servers can share one state store (PostgreSQL). Each controller's unit of work (an
endpoint's instances, a transform job, a recommendation job, the schedule loop) is done
by the one server that holds its lease. A lease is granted by the store only when it is
free, expired or already this server's (`StateStore.acquire`: settled by the database,
never check-then-set), held for `period_s`, and renewed every third of that while the
server lives; when a server dies its leases expire and the next pass of another server's
controller takes them, so the work moves within about one period plus one pass.

A lease is lost only when the store says another server holds it: while the store cannot
be reached this server keeps doing what it holds (its instances keep serving), and no
other server can take anything meanwhile, since it needs the same store to.

With a local store (the embedded SQLite file) the data dir's lock already makes this
server the only one: every lease is granted without a call.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Iterable

from modelhost.storage.loop_store import LoopStore
from modelhost.storage.sqlite import StoreUnavailable
from modelhost.storage.state import StateStore

log = logging.getLogger(__name__)


def lease(kind: str, name: str) -> str:
    """The lease name of one unit of work."""
    return f"{kind}:{name}"


class Ownership:
    def __init__(self, store: StateStore, holder: str, period_s: float) -> None:
        self.holder = holder
        self.period_s = period_s
        #: True when no other server can share the store: everything is this server's.
        self.exclusive = store.local
        self._store = LoopStore(store)
        self._held: set[str] = set()
        self._lost: list[Callable[[str], None]] = []

    def owns(self, name: str) -> bool:
        """Whether this server holds the lease `name`, as last heard (no I/O)."""
        return self.exclusive or name in self._held

    def held(self, prefix: str) -> builtins.list[str]:
        """The leases this server holds whose names start with `prefix`."""
        return sorted(name for name in self._held if name.startswith(prefix))

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call `callback(name)` when another server turns out to hold a lease this one
        held (on the event loop)."""
        self._lost.append(callback)

    async def claim(self, names: Iterable[str]) -> set[str]:
        """Take or renew the leases `names`; returns those this server holds now. While
        the store is unreachable, those it held before."""
        wanted = builtins.list(names)
        if self.exclusive or not wanted:
            return set(wanted)
        try:
            granted = await self._store.acquire(wanted, self.holder, self.period_s)
        except StoreUnavailable:
            return {name for name in wanted if name in self._held}
        lost = {name for name in wanted if name in self._held and name not in granted}
        self._held.difference_update(lost)
        self._held.update(granted)
        for name in sorted(lost):
            log.warning("lease %s is held by another server now; leaving its work", name)
            for callback in self._lost:
                callback(name)
        return granted

    async def release(self, names: Iterable[str]) -> None:
        """Give leases up (the work is done or gone), so no one waits for them to expire."""
        mine = [name for name in names if name in self._held]
        if self.exclusive or not mine:
            return
        self._held.difference_update(mine)
        try:
            await self._store.release(mine, self.holder)
        except StoreUnavailable:
            log.info("could not release leases %s; they expire by themselves", mine)

    async def run(self) -> None:
        """Renew every held lease three times a period, for as long as the server runs."""
        while True:
            await asyncio.sleep(self.period_s / 3)
            if self._held:
                try:
                    await self.claim(sorted(self._held))
                except Exception:
                    log.exception("renewing leases failed; retrying")

    async def shutdown(self) -> None:
        """Hand every lease back: another server takes the work at its next pass."""
        await self.release(sorted(self._held))
