"""Request validation against botocore's service models.

botocore's own ParamValidator checks required members, types and minimums; AWS services
also enforce maximums, enums and patterns, which botocore leaves to the server. Both run
here so a request modelhost accepts is one SageMaker would accept.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import regex
from botocore.model import Shape
from botocore.validate import ParamValidator

from modelhost.errors import ValidationError

# Artifact locations SageMaker restricts to s3:// and https://; modelhost also reads local
# files (file:// URIs and absolute paths), which is what a laptop deployment needs.
_LOCAL_URI_SHAPES = frozenset({"Url", "S3ModelUri"})
_NUMERIC = frozenset({"integer", "long", "float", "double", "timestamp"})
_MAX_PROBLEMS = 10


def _local_uri(shape: Shape, value: str) -> bool:
    return shape.name in _LOCAL_URI_SHAPES and value.startswith(("file://", "/"))


@cache
def _pattern(expression: str) -> regex.Pattern[str] | None:
    """AWS patterns are Java regexes (\\p{L} and friends), which `regex` understands."""
    try:
        return regex.compile(expression, regex.DOTALL)
    except regex.error:
        return None


def _constraint_errors(value: Any, shape: Shape, path: str, out: list[str]) -> None:
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for member, member_shape in shape.members.items():
            if member in value:
                child = f"{path}.{_lower_first(member)}"
                _constraint_errors(value[member], member_shape, child, out)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have "
                f"length less than or equal to {meta['max']}"
            )
        for index, item in enumerate(value, start=1):
            _constraint_errors(item, shape.member, f"{path}.{index}.member", out)
    elif shape.type_name == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have "
                f"length less than or equal to {meta['max']}"
            )
        for key, item in value.items():
            _constraint_errors(key, shape.key, f"{path}.key", out)
            _constraint_errors(item, shape.value, f"{path}.{key}", out)
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                f"Value '{_clip(value)}' at '{path}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {meta['max']}"
            )
        enum = shape.enum
        if enum and value not in enum:
            out.append(
                f"Value '{_clip(value)}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(enum)}]"
            )
        pattern = meta.get("pattern")
        compiled = _pattern(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value) and not _local_uri(shape, value):
            out.append(
                f"Value '{_clip(value)}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
    elif shape.type_name in _NUMERIC and isinstance(value, bool):
        # JSON true/false are not numbers, whatever Python's bool-is-int says.
        out.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: Member must "
            f"be a {'timestamp' if shape.type_name == 'timestamp' else 'number'}"
        )
    elif (
        shape.type_name in _NUMERIC
        and isinstance(value, int | float)
        and ("max" in meta and value > meta["max"])
    ):
        out.append(
            f"Value '{_clip(value)}' at '{path}' failed to satisfy constraint: Member "
            f"must have value less than or equal to {meta['max']}"
        )


def validate_request(params: Any, shape: Shape | None) -> None:
    """Raise ValidationError with the problems found, in AWS's wording where it has one."""
    if shape is None:
        return
    if not isinstance(params, dict):
        raise ValidationError("Request body must be a JSON object")
    problems: list[str] = []
    try:
        report = ParamValidator().validate(params, shape)
        if report.has_errors():
            problems.extend(_botocore_problems(report))
        _constraint_errors(params, shape, "", problems)
    except RecursionError:
        raise ValidationError("Request is nested too deeply") from None
    except (OverflowError, RuntimeError, ValueError) as exc:
        # botocore's timestamp parsing raises these for values outside datetime's range.
        raise ValidationError(f"Request has an invalid value: {_clip(exc, 300)}") from None
    if problems:
        problems = [p.replace("at '.", "at '") for p in problems]
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        shown = "; ".join(problems[:_MAX_PROBLEMS])
        more = f"; and {count - _MAX_PROBLEMS} more" if count > _MAX_PROBLEMS else ""
        raise ValidationError(f"{count} validation {noun} detected: {shown}{more}")


def _botocore_problems(report: Any) -> list[str]:
    """The validator's findings, formatted one by one: its whole report of a request with
    thousands of bad members would be megabytes of text nobody reads."""
    errors = getattr(report, "_errors", None)
    if errors is None or not hasattr(report, "_format_error"):
        lines = report.generate_report().splitlines()
    else:
        lines = [report._format_error(e) for e in errors[:_MAX_PROBLEMS]]
        lines += ["x"] * max(len(errors) - _MAX_PROBLEMS, 0)  # counted, not shown
    return [_clip(line.strip(), 300) for line in lines if line.strip()]


def _clip(value: object, limit: int = 64) -> str:
    """Error messages quote input; a megabyte of input must not make a megabyte answer."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]
