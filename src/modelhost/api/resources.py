"""Helpers every resource family shares: public view of a record, lookups with
SageMaker's not-found wording."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelhost.api.context import Context
from modelhost.api.tags import check_count
from modelhost.errors import ValidationError

Record = dict[str, Any]


def public(record: Record) -> Record:
    """Drop the private keys (leading "_") a record keeps for the controllers."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def require(ctx: Context, kind: str, label: str, name: str) -> Record:
    record = ctx.store.get(kind, name)
    if record is None:
        raise ValidationError(f'Could not find {label} "{ctx.arn(kind.replace("_", "-"), name)}".')
    return record


def copy_optional(params: Record, record: Record, keys: tuple[str, ...]) -> None:
    """Keep the request members Describe* echoes back unchanged."""
    record.update({key: params[key] for key in keys if key in params})


def create(
    ctx: Context,
    kind: str,
    label: str,
    name: str,
    record: Record,
    tags: list[dict[str, str]] | None,
) -> None:
    """Store a new resource and its tags, in one transaction: a delete of the name cannot
    come between them and leave the tags to whatever is created under the name next.
    SageMaker names are unique regardless of case (ARNs carry them in lower case); the
    store's insert settles it, so two servers (or threads) creating the same name at once
    cannot both succeed."""
    wanted = {t["Key"]: t["Value"] for t in tags or []}
    check_count(record["_arn"], set(wanted))
    if not ctx.store.insert(kind, name, record, fold_case=True, arn=record["_arn"], tags=wanted):
        raise ValidationError(
            f'Cannot create already existing {label} "{ctx.arn(kind.replace("_", "-"), name)}".'
        )


def upsert(ctx: Context, kind: str, name: str, change: Callable[[Record | None], Record]) -> Record:
    """Create or update one record atomically (a Put* operation): `change` gets the stored
    record (None when there is none) and returns the new one, and keeps whatever fields of
    the stored record others own. A read-then-put would lose a write another server or a
    controller made in between; here each attempt is one store transaction, and one that
    finds the record created (or deleted) meanwhile tries again against what is there.
    Returns the record stored."""
    while True:
        updated = ctx.store.modify(kind, name, change)
        if updated is not None:
            return updated
        record = change(None)
        if ctx.store.insert(kind, name, record):
            return record
