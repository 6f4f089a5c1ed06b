"""The state store as code on the event loop reaches it: every call awaited.

A local store (the embedded SQLite file) answers in microseconds, so its calls run
directly, without paying for a thread hop; any other store's calls wait on a network round
trip and run in a worker thread, so the event loop (which also serves every invocation)
never blocks on the database. `call` does the same for synchronous code that makes several
store calls in a row (a controller's pass), one thread hop for all of them."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from typing import Any, TypeVar

from modelhost.storage.state import Record, StateStore

T = TypeVar("T")


class LoopStore:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `call` (a store call, or synchronous code that makes several: an API
        operation, a controller's pass over records) where it cannot block the loop:
        directly for a local store, in a worker thread otherwise. Code run this way must
        touch only the store and what is safe from a thread, never the router."""
        if self.store.local:
            return call(*args, **kwargs)
        return await asyncio.to_thread(call, *args, **kwargs)

    async def get(self, kind: str, name: str) -> Record | None:
        return await self.call(self.store.get, kind, name)

    async def list(self, kind: str) -> builtins.list[Record]:
        return await self.call(self.store.list, kind)

    async def put(self, kind: str, name: str, record: Record) -> None:
        await self.call(self.store.put, kind, name, record)

    async def modify(
        self, kind: str, name: str, change: Callable[[Record], Record | None]
    ) -> Record | None:
        """`change` may run in a worker thread: it must only compute the new record."""
        return await self.call(self.store.modify, kind, name, change)

    async def delete(self, kind: str, name: str, *, arn: str | None = None) -> bool:
        return await self.call(self.store.delete, kind, name, arn=arn)

    async def tags(self, arn: str) -> dict[str, str]:
        return await self.call(self.store.tags, arn)

    async def delete_tags(self, arn: str, keys: builtins.list[str] | None = None) -> None:
        await self.call(self.store.delete_tags, arn, keys)

    async def acquire(self, names: builtins.list[str], holder: str, ttl_s: float) -> set[str]:
        return await self.call(self.store.acquire, names, holder, ttl_s)

    async def release(self, names: builtins.list[str], holder: str) -> None:
        await self.call(self.store.release, names, holder)

    async def holders(self, names: builtins.list[str]) -> dict[str, str]:
        return await self.call(self.store.holders, names)
