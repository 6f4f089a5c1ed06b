"""List* semantics shared by every resource: filters, sorting and NextToken pagination the
way SageMaker does them, so boto3 paginators walk our results unchanged."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import Any

from botocore.utils import parse_timestamp

from modelhost.errors import ValidationError

Record = dict[str, Any]


def epoch(value: Any) -> float:
    try:
        return parse_timestamp(value).timestamp() if not isinstance(value, int | float) else value
    except (ValueError, OverflowError, RuntimeError) as exc:
        raise ValidationError(f"Invalid timestamp: {str(value)[:64]}") from exc


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_token(token: str) -> int:
    """The offset a NextToken we issued stands for; anything else is the caller's mistake."""
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset" or not value.isascii() or not value.isdigit() or len(value) > 12:
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeError) as exc:
        raise ValidationError(f"Invalid pagination token: {token[:64]}") from exc


def paginate(
    records: Iterable[Record],
    params: dict[str, Any],
    *,
    name_key: str,
    sort_keys: dict[str, str],
    summarize: Callable[[Record], Record],
    result_key: str,
    status_key: str | None = None,
) -> dict[str, Any]:
    """Filter, sort and cut one page of `records`.

    `sort_keys` maps the SortBy values the operation allows to record fields; SageMaker
    sorts by CreationTime, descending, unless asked otherwise.
    """
    items = list(records)
    if needle := params.get("NameContains"):
        items = [r for r in items if needle.lower() in r[name_key].lower()]
    for param, field, keep in (
        ("CreationTimeBefore", "CreationTime", lambda v, t: v < t),
        ("CreationTimeAfter", "CreationTime", lambda v, t: v > t),
        ("LastModifiedTimeBefore", "LastModifiedTime", lambda v, t: v < t),
        ("LastModifiedTimeAfter", "LastModifiedTime", lambda v, t: v > t),
    ):
        if param in params:
            limit = epoch(params[param])
            items = [r for r in items if keep(r.get(field, r["CreationTime"]), limit)]
    if status_key and (status := params.get("StatusEquals")):
        items = [r for r in items if r.get(status_key) == status]

    sort_by = params.get("SortBy", "CreationTime")
    sort_field = sort_keys.get(sort_by)
    if sort_field is None:
        raise ValidationError(f"SortBy must be one of {sorted(sort_keys)}, got {sort_by}")
    descending = params.get("SortOrder", "Descending") == "Descending"
    items.sort(
        key=lambda r: (r.get(sort_field) is None, r.get(sort_field), r[name_key]),
        reverse=descending,
    )

    return page(items, params, result_key, params.get("MaxResults", 10), summarize)


def page(
    items: list[Record],
    params: dict[str, Any],
    result_key: str,
    size: int,
    summarize: Callable[[Record], Record] | None = None,
) -> dict[str, Any]:
    """One NextToken page of `size` items of an already filtered and sorted list; only the
    page's items are summarized."""
    start = decode_token(params["NextToken"]) if params.get("NextToken") else 0
    chosen = items[start : start + size]
    result: dict[str, Any] = {
        result_key: chosen if summarize is None else [summarize(r) for r in chosen]
    }
    if start + size < len(items):
        result["NextToken"] = encode_token(start + size)
    return result
