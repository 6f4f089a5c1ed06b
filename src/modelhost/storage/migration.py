"""Copying a whole state store into another: how a laptop's embedded SQLite state moves
to a team's PostgreSQL database (`modelhost state migrate`).

Records go in through the store interface, with `fold_case` for the kinds SageMaker names
case-insensitively, so the target's uniqueness rules hold for what was copied as for what
is created later. Tags follow the ARNs their records carry. Leases are not copied: they
belong to the servers that were running, and the target's servers take what they need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelhost.domain import kinds
from modelhost.storage.state import Record, StateStore


class TargetNotEmpty(Exception):
    """The target already holds records and replacing them was not asked for."""


@dataclass
class MigrationReport:
    #: records copied, by kind (kinds with none left out)
    records: dict[str, int] = field(default_factory=dict)
    tags: int = 0
    #: records that replaced one of the same kind and name already in the target
    replaced: int = 0
    #: (kind, name) left out: the target holds the same name in another case
    clashes: list[tuple[str, str]] = field(default_factory=list)


def _arns(record: Record) -> set[str]:
    """The ARNs a record carries at its top level, any of which may hold tags."""
    return {v for v in record.values() if isinstance(v, str) and v.startswith("arn:")}


def is_empty(store: StateStore) -> bool:
    return not any(store.names(kind) for kind in kinds.ALL)


def copy_state(source: StateStore, target: StateStore, *, replace: bool = False) -> MigrationReport:
    """Copy every record and tag of `source` into `target`. Refuses (TargetNotEmpty) a
    target that holds records unless `replace`: then a record of the same kind and name
    is overwritten, and one whose name differs only in case is left out and reported."""
    if not replace and not is_empty(target):
        raise TargetNotEmpty("the target state store already holds records")
    report = MigrationReport()
    tagged: set[str] = set()  # ARNs whose tags were copied (several records may name one)
    for kind in kinds.ALL:
        fold = kind in kinds.CASE_INSENSITIVE
        names = source.names(kind)
        for name in names:
            record = source.get(kind, name)
            if record is None:  # deleted while copying
                continue
            if not target.insert(kind, name, record, fold_case=fold):
                if target.get(kind, name) is None:
                    report.clashes.append((kind, name))
                    continue
                target.put(kind, name, record)
                report.replaced += 1
            report.records[kind] = report.records.get(kind, 0) + 1
            for arn in sorted(_arns(record) - tagged):
                tagged.add(arn)
                tags = source.tags(arn)
                if tags:
                    target.set_tags(arn, tags)
                    report.tags += len(tags)
    return report
