"""The transform part journal on its own: what a restarted job keeps, drops and assembles."""

from __future__ import annotations

from pathlib import Path

from modelhost.controllers.transform import journal
from modelhost.storage import FsspecObjectStore


def _write_parts(parts_dir: Path, contents: list[bytes]) -> None:
    for number, content in enumerate(contents):
        part = journal.open_part(parts_dir, number)
        part.write(content)
        journal.seal(part, parts_dir, number)


def test_a_sealed_part_is_visible_under_its_final_name_only(tmp_path: Path) -> None:
    part = journal.open_part(tmp_path / "0", 0)
    part.write(b"a\n")
    assert [p.name for p in (tmp_path / "0").iterdir()] == [".part-000000"]
    journal.seal(part, tmp_path / "0", 0)
    assert [p.name for p in (tmp_path / "0").iterdir()] == ["part-000000"]
    assert (tmp_path / "0" / "part-000000").read_bytes() == b"a\n"


def test_parts_past_the_committed_count_and_unsealed_parts_are_dropped(tmp_path: Path) -> None:
    parts = tmp_path / "0"
    _write_parts(parts, [b"a", b"b", b"c"])
    (parts / ".part-000003").write_bytes(b"half")  # a crash while writing part 3
    journal.drop_uncommitted(parts, committed=2)  # the store counted parts 0 and 1
    assert sorted(p.name for p in parts.iterdir()) == ["part-000000", "part-000001"]


def test_dropping_in_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    journal.drop_uncommitted(tmp_path / "never-written", committed=0)
    assert not (tmp_path / "never-written").exists()


def test_assemble_concatenates_committed_parts_in_order(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    _write_parts(parts, [b"1\n", b"2\n", b"3\n"])
    objects = FsspecObjectStore(tmp_path / "objects")
    journal.assemble(objects, parts, 2, "s3://out/data.csv.out")
    with objects.open("s3://out/data.csv.out", "rb") as out:
        assert out.read() == b"1\n2\n"


def test_commits_count_parts_and_the_summary_adds_up_objects() -> None:
    progress = journal.new_progress([["s3://in/a", "a"], ["s3://in/b", "b"]])
    assert journal.summary(progress) == {
        "ObjectsTotal": 2,
        "ObjectsCompleted": 0,
        "RecordsProcessed": 0,
        "BytesProcessed": 0,
    }
    state = journal.record_commit(progress, 0, offset=100, records=10)
    assert state == {"done": False, "offset": 100, "records": 10, "parts": 1}
    journal.record_commit(progress, 0, offset=150, records=15)
    state = journal.record_commit(progress, 0, done=True)  # done counts no part
    assert state["parts"] == 2 and state["done"]
    journal.record_commit(progress, 1, offset=7, records=1)
    assert journal.summary(progress) == {
        "ObjectsTotal": 2,
        "ObjectsCompleted": 1,
        "RecordsProcessed": 16,
        "BytesProcessed": 157,
    }
