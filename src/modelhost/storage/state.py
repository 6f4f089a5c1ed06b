"""The state store: every resource the API knows, and each resource's tags.

Controllers read desired state from here and nothing lives only in memory, so a restarted
server resumes where it stopped. Records are the JSON documents Describe* returns (times as
epoch seconds), plus private keys starting with "_" that never leave the server; they stay
plain JSON objects (`Record`) because each kind has its own fields and the store never
looks inside one.

This is the interface the rest of modelhost sees; `SqliteStateStore` (sqlite_state.py) is
the embedded implementation and `modelhost.storage.open_store` picks one from the
settings. Every implementation runs the contract suite in tests/storage/test_state_contract.py.
Calls are synchronous and each one is atomic on its own: `modify` is the read-modify-write
the API and the controllers use to write one record without losing each other's fields.
A store whose calls may wait on a network round trip says so with `local = False`; code on
the event loop reaches the store through `LoopStore` (loop_store.py), which runs such calls
in a thread.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, Protocol

Record = dict[str, Any]


class StateStore(Protocol):
    #: True when a call never leaves the process (an embedded file): quick enough to make
    #: on the event loop. False when it may wait on a database server.
    local: bool

    def insert(
        self,
        kind: str,
        name: str,
        record: Record,
        *,
        fold_case: bool = False,
        arn: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> bool:
        """Add a resource; False when one of that kind and name already exists. With
        `fold_case`, also False when another record of the kind inserted with `fold_case`
        has the same name regardless of case (SageMaker's unique names): the store settles
        it, so two creations racing cannot both win. With `arn`, the resource's tags become
        `tags` in the same transaction (replacing any an earlier resource of that ARN left
        behind), so no delete can come between the record and its tags."""
        ...

    def put(self, kind: str, name: str, record: Record) -> None:
        """Add or replace a resource."""
        ...

    def modify(
        self, kind: str, name: str, change: Callable[[Record], Record | None]
    ) -> Record | None:
        """Read-modify-write one record atomically. `change` returns the new record, or
        None to leave it as it is. Returns the stored record (None if absent)."""
        ...

    def get(self, kind: str, name: str) -> Record | None: ...

    def delete(self, kind: str, name: str, *, arn: str | None = None) -> bool:
        """Remove a resource; False when there was none. With `arn`, its tags go in the
        same transaction, so a resource created under the name meanwhile keeps its own."""
        ...

    def list(self, kind: str) -> builtins.list[Record]:
        """Every record of a kind, by name."""
        ...

    def names(self, kind: str) -> builtins.list[str]:
        """The names of a kind's records, sorted."""
        ...

    def tags(self, arn: str) -> dict[str, str]:
        """A resource's tags, by key."""
        ...

    def set_tags(self, arn: str, tags: dict[str, str]) -> None:
        """Add or overwrite the given tags; other tags of the resource stay."""
        ...

    def delete_tags(self, arn: str, keys: builtins.list[str] | None = None) -> None:
        """Remove the given tag keys, or every tag of the resource when keys is None."""
        ...

    # --- leases: which server owns a unit of work -----------------------------------

    def acquire(self, names: builtins.list[str], holder: str, ttl_s: float) -> set[str]:
        """Take or renew the leases `names` for `holder`, each until `ttl_s` from now: a
        lease is granted when nobody holds it, its holder let it expire, or `holder`
        already holds it. Returns the names `holder` holds now. The store settles it in
        one statement per lease, so two holders racing for a lease cannot both win."""
        ...

    def release(self, names: builtins.list[str], holder: str) -> None:
        """Give up those of the leases `names` that `holder` holds."""
        ...

    def holders(self, names: builtins.list[str]) -> dict[str, str]:
        """The holder of each lease among `names` that has not expired."""
        ...

    def close(self) -> None:
        """Leave the store consistent on disk (or wherever it lives); no call after but
        another close, which does nothing."""
        ...
