"""The bisection that names the record a model refuses, against a model stand-in that is a
plain function of the lines it gets."""

from __future__ import annotations

import asyncio

import pytest

from modelhost.controllers.transform.invoke import Rejected, bisect, refused_records


def _refusing(bad: set[bytes], calls: list[list[bytes]]):
    async def refusal(lines: list[bytes]) -> Rejected | None:
        calls.append(lines)
        found = [line for line in lines if line in bad]
        return Rejected(400, f"bad {found[0].decode().strip()}") if found else None

    return refusal


def _lines(count: int) -> list[bytes]:
    return [f"{n}\n".encode() for n in range(count)]


@pytest.mark.parametrize("bad_index", [0, 1, 500, 998, 999])
def test_bisection_finds_the_one_refused_line(bad_index: int) -> None:
    lines, calls = _lines(1000), []
    lo, hi, rejected = asyncio.run(
        bisect(lines, Rejected(400, "whole batch"), _refusing({lines[bad_index]}, calls))
    )
    assert (lo, hi) == (bad_index, bad_index + 1)
    assert str(rejected) == f"the model answered 400: bad {bad_index}"
    assert len(calls) <= 2 * 10  # two halves tried per level at most, log2(1000) levels


def test_bisection_narrows_to_the_first_refused_line() -> None:
    lines, calls = _lines(64), []
    lo, hi, _ = asyncio.run(
        bisect(lines, Rejected(400, "x"), _refusing({lines[10], lines[40]}, calls))
    )
    assert (lo, hi) == (10, 11)


def test_bisection_stops_when_each_half_passes_alone() -> None:
    """A model that refuses only the whole batch: the span stays the whole batch."""
    lines = _lines(8)

    async def only_together(part: list[bytes]) -> Rejected | None:
        return Rejected(400, "together") if len(part) == len(lines) else None

    whole = Rejected(400, "whole")
    lo, hi, rejected = asyncio.run(bisect(lines, whole, only_together))
    assert (lo, hi, rejected) == (0, 8, whole)


@pytest.mark.parametrize(
    ("lo", "hi", "named"),
    [
        (3, 4, "record 14"),  # one record: 1-based, after the batch's first (10)
        (2, 6, "records 13-16"),  # a narrower span
        (0, 20, "records 11-30"),  # the whole batch
    ],
)
def test_refused_records_counts_from_one(lo: int, hi: int, named: str) -> None:
    assert refused_records(first_record=10, records=20, lo=lo, hi=hi) == named


def test_a_one_record_batch_names_its_record() -> None:
    assert refused_records(first_record=0, records=1, lo=0, hi=1) == "record 1"
