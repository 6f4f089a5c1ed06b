"""Permissions of access keys: IAM-style identity policies, one per key.

`MODELHOST_POLICY_FILE` names a JSON object mapping each access key id to a policy
document, `{"Statement": [{"Effect": "Allow"|"Deny", "Action": ..., "Resource": ...}]}`,
with the wildcards IAM has (`*`, `?`) in actions (case-insensitive) and resource ARNs.
Evaluation is IAM's: an explicit Deny wins, then an Allow, and anything not allowed is
denied, including every call of a configured key the file does not name. Without a file
every configured key may do everything.

The file is checked whole at start-up: a statement with a field we do not evaluate
(Condition, NotAction, Principal...) is refused rather than silently ignored, since an
ignored Condition would grant more than its author meant.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelhost.errors import SageMakerError

_STATEMENT_FIELDS = frozenset({"Sid", "Effect", "Action", "Resource"})
_DOCUMENT_FIELDS = frozenset({"Version", "Statement"})


class AccessDenied(SageMakerError):
    """As SageMaker answers an IAM denial: 400, AccessDeniedException."""

    code = "AccessDeniedException"
    status = 400


def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters (`/` and `:` included), `?` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True)
class Statement:
    allow: bool
    actions: tuple[re.Pattern[str], ...]
    resources: tuple[re.Pattern[str], ...]

    def matches(self, action: str, resource: str) -> bool:
        return any(p.fullmatch(action) for p in self.actions) and any(
            p.fullmatch(resource) for p in self.resources
        )


def _strings(value: Any, where: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v for v in values)
    ):
        raise ValueError(f"{where} must be a non-empty string or list of strings")
    return values


def _statement(raw: Any, where: str) -> Statement:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(raw.keys() - _STATEMENT_FIELDS)
    if unknown:
        raise ValueError(
            f"{where}: {', '.join(unknown)} is not supported (only "
            "Sid, Effect, Action and Resource are evaluated)"
        )
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise ValueError(f"{where}: Effect must be Allow or Deny")
    for name in ("Action", "Resource"):
        if name not in raw:
            raise ValueError(f"{where}: {name} is required")
    actions = _strings(raw["Action"], f"{where}.Action")
    for action in actions:
        if action != "*" and ":" not in action:
            raise ValueError(f"{where}.Action {action!r} must be service:Operation or *")
    return Statement(
        allow=raw["Effect"] == "Allow",
        actions=tuple(_pattern(a, ignore_case=True) for a in actions),
        resources=tuple(
            _pattern(r, ignore_case=False) for r in _strings(raw["Resource"], f"{where}.Resource")
        ),
    )


@dataclass(frozen=True)
class Policies:
    """The statements of every access key, and the account their user ARNs are in."""

    statements: dict[str, tuple[Statement, ...]]
    account_id: str

    @classmethod
    def load(cls, path: Path, access_keys: dict[str, str], account_id: str) -> Policies:
        """Read and check the whole file; ValueError with one line saying what is wrong."""
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"MODELHOST_POLICY_FILE {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"MODELHOST_POLICY_FILE {path}: not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(
                f"MODELHOST_POLICY_FILE {path}: expected an object mapping "
                "access key ids to policy documents"
            )
        if not access_keys:
            raise ValueError(
                f"MODELHOST_POLICY_FILE {path} is set but MODELHOST_ACCESS_KEYS "
                "is not: there are no keys to give permissions to"
            )
        statements = {}
        for key, document in raw.items():
            where = f"MODELHOST_POLICY_FILE {path}: {key}"
            if key not in access_keys:
                raise ValueError(f"{where}: not one of MODELHOST_ACCESS_KEYS")
            if not isinstance(document, dict) or "Statement" not in document:
                raise ValueError(f"{where}: expected a policy document with a Statement")
            unknown = sorted(document.keys() - _DOCUMENT_FIELDS)
            if unknown:
                raise ValueError(f"{where}: {', '.join(unknown)} is not supported")
            listed = document["Statement"]
            listed = [listed] if isinstance(listed, dict) else listed
            if not isinstance(listed, list):
                raise ValueError(f"{where}.Statement must be a list of statements")
            statements[key] = tuple(
                _statement(s, f"{where}.Statement[{i}]") for i, s in enumerate(listed)
            )
        return cls(statements, account_id)

    def authorize(self, access_key: str, action: str, resources: list[str]) -> None:
        """Raise AccessDenied unless `access_key` may do `action` on every resource."""
        statements = self.statements.get(access_key, ())
        for resource in resources:
            matching = [s for s in statements if s.matches(action, resource)]
            if any(not s.allow for s in matching):
                reason = "with an explicit deny in an identity-based policy"
            elif matching:
                continue
            else:
                reason = f"because no identity-based policy allows the {action} action"
            raise AccessDenied(
                f"User: arn:aws:iam::{self.account_id}:user/{access_key} is not authorized "
                f"to perform: {action} on resource: {resource} {reason}"
            )
