"""Search over the model registry (`Resource` ModelPackage or ModelPackageGroup).

The sagemaker SDK looks a package group up with Search before it registers a version;
this answers that and the ordinary filter expressions (`Filters`, `SubExpressions`,
`Operator` And/Or) over a record's top-level fields, sorted and paged as List* calls are.
Other resources and `NestedFilters` are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelhost.api.context import Context
from modelhost.api.listing import epoch, page
from modelhost.api.resources import public
from modelhost.domain import kinds
from modelhost.errors import ValidationError

# Resource -> the store kind of its records (each result carries one under that key)
_RESOURCES = {
    "ModelPackage": kinds.MODEL_PACKAGE,
    "ModelPackageGroup": kinds.MODEL_PACKAGE_GROUP,
}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(actual: Any, operator: str, wanted: str | None) -> bool:
    if operator == "Exists":
        return actual is not None
    if operator == "NotExists":
        return actual is None
    if actual is None or wanted is None:
        return False
    if operator == "Equals":
        return str(actual) == wanted
    if operator == "NotEquals":
        return str(actual) != wanted
    if operator == "Contains":
        return wanted in str(actual)
    if operator == "In":
        return str(actual) in [item.strip() for item in wanted.split(",")]
    left, right = _ordered(actual, wanted)
    if left is None or right is None:
        return False
    return {
        "GreaterThan": left > right,
        "GreaterThanOrEqualTo": left >= right,
        "LessThan": left < right,
        "LessThanOrEqualTo": left <= right,
    }[operator]


def _ordered(actual: Any, wanted: str) -> tuple[Any, Any]:
    """Numbers compare as numbers, times (epoch seconds here) with a given timestamp."""
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        number = _number(wanted)
        return actual, number if number is not None else epoch(wanted)
    return str(actual), wanted


def _field(record: dict[str, Any], name: str) -> Any:
    value: Any = record
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _filter(name: str, operator: str, wanted: str | None) -> Callable[[dict[str, Any]], bool]:
    return lambda record: _compare(_field(record, name), operator, wanted)


def _matcher(expression: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    if "NestedFilters" in expression:
        raise ValidationError("SearchExpression.NestedFilters is not supported by modelhost.")
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for item in expression.get("Filters", []):
        name, operator = item["Name"], item.get("Operator", "Equals")
        wanted = item.get("Value")
        tests.append(_filter(name, operator, wanted))
    tests.extend(_matcher(sub) for sub in expression.get("SubExpressions", []))
    combine = any if expression.get("Operator", "And") == "Or" else all
    return lambda record: combine(test(record) for test in tests) if tests else True


def search(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    resource = params["Resource"]
    if resource not in _RESOURCES:
        raise ValidationError(
            f"Search over {resource} is not supported by modelhost; it searches "
            f"{' and '.join(sorted(_RESOURCES))}."
        )
    for member in ("CrossAccountFilterOption", "VisibilityConditions"):
        if member in params:
            raise ValidationError(f"Search: {member} is not supported by modelhost.")
    matches = _matcher(params.get("SearchExpression", {}))
    records = [public(r) for r in ctx.store.list(_RESOURCES[resource]) if matches(public(r))]
    sort_by = params.get("SortBy", "CreationTime")

    def order(record: dict[str, Any]) -> tuple[bool, Any]:
        value = _field(record, sort_by)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return value is None, value if number else str(value or "")

    records.sort(key=order, reverse=params.get("SortOrder", "Descending") == "Descending")
    for record in records:
        if resource == "ModelPackage":
            record["Tags"] = _tags(ctx, record["ModelPackageArn"])
    answer = page([{resource: r} for r in records], params, "Results", params.get("MaxResults", 10))
    answer["TotalHits"] = {"Value": len(records), "Relation": "EqualTo"}
    return answer


def _tags(ctx: Context, arn: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(ctx.store.tags(arn).items())]
