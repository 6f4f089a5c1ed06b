"""Helpers every resource family shares: public view of a record, lookups with
SageMaker's not-found wording."""

from __future__ import annotations

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
    """Store a new resource and its tags. SageMaker names are unique regardless of case
    (ARNs carry them in lower case); the store's insert settles it, so two servers (or
    threads) creating the same name at once cannot both succeed."""
    if tags:
        check_count(ctx, record["_arn"], tags)
    if not ctx.store.insert(kind, name, record, fold_case=True):
        raise ValidationError(
            f'Cannot create already existing {label} "{ctx.arn(kind.replace("_", "-"), name)}".'
        )
    if tags:
        ctx.store.set_tags(record["_arn"], {t["Key"]: t["Value"] for t in tags})
