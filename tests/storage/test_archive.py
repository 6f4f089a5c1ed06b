"""Unpacking model archives: good ones land whole, hostile ones are refused and leave
nothing behind, neither in the model directory nor anywhere else."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from modelhost.storage import ModelDataTimeout, ObjectStore, UnsafeArchiveError, prepare_model_dir


@dataclass
class Member:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644
    extra: dict[str, object] = field(default_factory=dict)


def tar_bytes(members: list[Member], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.mode = m.mode
            info.linkname = m.linkname
            info.mtime = 1_700_000_000
            for key, value in m.extra.items():
                setattr(info, key, value)
            if m.type == tarfile.REGTYPE:
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


GOOD = [
    Member("./", type=tarfile.DIRTYPE, mode=0o755),
    Member("./model.joblib", b"weights" * 100),
    Member("./code/", type=tarfile.DIRTYPE, mode=0o755),
    Member("./code/inference.py", b"def model_fn(model_dir):\n    return 1\n"),
    Member("./code/requirements.txt", b"numpy\n"),
    Member("./assets/deep/er/vocab.txt", b"a\nb\n"),
    Member("./bin/run.sh", b"#!/bin/sh\n", mode=0o4755),  # setuid must not survive
    Member("./latest", type=tarfile.SYMTYPE, linkname="model.joblib"),
    Member("./code/vocab.txt", type=tarfile.SYMTYPE, linkname="../assets/deep/er/vocab.txt"),
    Member("./copy.joblib", type=tarfile.LNKTYPE, linkname="./model.joblib"),
]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """tmp_path/work holds the models folder; tmp_path itself is checked for strays."""
    (tmp_path / "work" / "models").mkdir(parents=True)
    return tmp_path / "work"


def put(store: ObjectStore, uri: str, data: bytes) -> str:
    store.put_bytes(uri, data)
    return uri


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_good_archive_unpacks(local_store: ObjectStore, work: Path, mode: str) -> None:
    url = put(local_store, "s3://models/m/model.tar.gz", tar_bytes(GOOD, mode))
    dest = work / "models" / "m"
    prepare_model_dir(local_store, url, dest, max_bytes=10_000)

    assert (dest / "model.joblib").read_bytes() == b"weights" * 100
    assert (dest / "code" / "inference.py").read_text().startswith("def model_fn")
    assert (dest / "assets" / "deep" / "er" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert (dest / "latest").is_symlink() and (dest / "latest").read_bytes() == b"weights" * 100
    assert (dest / "code" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert (dest / "copy.joblib").read_bytes() == b"weights" * 100
    run = (dest / "bin" / "run.sh").stat().st_mode
    assert run & stat.S_IXUSR and not run & stat.S_ISUID
    # Only the finished model remains next to it: no staging folders.
    assert os.listdir(work / "models") == ["m"]


def test_existing_model_dir_is_replaced(local_store: ObjectStore, work: Path) -> None:
    dest = work / "models" / "m"
    dest.mkdir()
    (dest / "stale.bin").write_bytes(b"old")
    url = put(local_store, "s3://models/m/model.tar.gz", tar_bytes(GOOD))
    prepare_model_dir(local_store, url, dest, max_bytes=10_000)
    assert not (dest / "stale.bin").exists()
    assert (dest / "model.joblib").exists()
    assert os.listdir(work / "models") == ["m"]


def test_archive_with_an_empty_root_member_unpacks(
    local_store: ObjectStore, work: Path, tmp_path: Path
) -> None:
    """The sagemaker SDK's repack adds its folder with `arcname=os.path.sep`, which tar
    stores as a folder member named '': the archive's root."""
    folder = tmp_path / "repacked"
    (folder / "code").mkdir(parents=True)
    (folder / "model.joblib").write_bytes(b"weights")
    (folder / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return 1\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=os.path.sep)
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        assert tar.getnames()[0] == ""
    url = put(local_store, "s3://models/m/model.tar.gz", buffer.getvalue())
    dest = work / "models" / "m"
    prepare_model_dir(local_store, url, dest, max_bytes=10_000)
    assert (dest / "model.joblib").read_bytes() == b"weights"
    assert (dest / "code" / "inference.py").exists()


EVIL_ABSOLUTE = "/tmp/modelhost-test-evil-never-written"

REFUSED = {
    "traversal": ([Member("../evil", b"x")], "'../evil' escapes the model directory"),
    "nested-traversal": (
        [Member("code/", type=tarfile.DIRTYPE), Member("code/../../evil", b"x")],
        "'code/../../evil' escapes the model directory",
    ),
    "absolute": ([Member(EVIL_ABSOLUTE, b"x")], "has an absolute path"),
    "empty-file-name": ([Member("", b"x")], "has an empty or invalid name"),
    "empty-symlink-name": (
        [Member("", type=tarfile.SYMTYPE, linkname="/etc")],
        "has an empty or invalid name",
    ),
    "symlink-absolute": (
        [Member("passwd", type=tarfile.SYMTYPE, linkname="/etc/passwd")],
        "'passwd' is a symlink to an absolute path",
    ),
    "symlink-outside": (
        [Member("a/x", type=tarfile.SYMTYPE, linkname="../../x")],
        "'a/x' is a symlink to '../../x', outside the model directory",
    ),
    "symlink-then-write-through": (
        [
            Member("d/up", type=tarfile.SYMTYPE, linkname=".."),  # resolves to the root: ok
            Member("d/up/../evil", b"x"),  # but writing through it lands outside
        ],
        "'d/up/../evil' lies beneath the symlink 'up'",
    ),
    "symlink-chain": (
        [
            Member("a", type=tarfile.SYMTYPE, linkname="y/.."),
            Member("d/up", type=tarfile.SYMTYPE, linkname=".."),
            Member("y", type=tarfile.SYMTYPE, linkname="d/up"),
        ],
        "outside the model directory",
    ),
    "hardlink-outside": (
        [Member("h", type=tarfile.LNKTYPE, linkname="../outside.txt")],
        "'h' is a hard link to '../outside.txt', outside the model directory",
    ),
    "hardlink-absolute": (
        [Member("h", type=tarfile.LNKTYPE, linkname="/etc/passwd")],
        "'h' is a hard link to an absolute path",
    ),
    "hardlink-to-nothing": (
        [Member("h", type=tarfile.LNKTYPE, linkname="missing.bin")],
        "'h' is a hard link to 'missing.bin', which is not a file",
    ),
    "fifo": ([Member("pipe", type=tarfile.FIFOTYPE)], "'pipe' is a device, fifo"),
    "char-device": (
        [Member("null", type=tarfile.CHRTYPE, extra={"devmajor": 1, "devminor": 3})],
        "'null' is a device, fifo",
    ),
    "block-device": ([Member("sda", type=tarfile.BLKTYPE)], "'sda' is a device, fifo"),
    "oversize-member": ([Member("big.bin", b"x" * 5000)], "more than 1000 bytes"),
    "oversize-cumulative": (
        [Member(f"part{i}.bin", b"x" * 400) for i in range(3)],
        "more than 1000 bytes .*'part2.bin'",
    ),
    "oversize-hardlinks": (
        [Member("a.bin", b"x" * 600), Member("b.bin", type=tarfile.LNKTYPE, linkname="a.bin")],
        "more than 1000 bytes .*'b.bin'",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_hostile_archive_is_refused(
    case: str, local_store: ObjectStore, work: Path, tmp_path: Path
) -> None:
    members, message = REFUSED[case]
    # Good members first, so something was already written when the refusal comes.
    archive = tar_bytes([Member("ok/first.txt", b"fine"), *members])
    url = put(local_store, "s3://models/evil/model.tar.gz", archive)
    (work / "outside.txt").write_text("precious")
    before = snapshot(tmp_path)
    dest = work / "models" / "evil"

    with pytest.raises(UnsafeArchiveError, match=message):
        prepare_model_dir(local_store, url, dest, max_bytes=1000)

    assert not dest.exists() and not dest.is_symlink()
    assert snapshot(tmp_path) == before  # nothing written anywhere, no staging left
    assert (work / "outside.txt").read_text() == "precious"
    assert not os.path.lexists(EVIL_ABSOLUTE)


def test_archive_bomb_stops_early(local_store: ObjectStore, work: Path) -> None:
    # 200 MB of zeros in one gzip stream of ~200 KB; the limit is 1 MB.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 200 * 1024 * 1024
        tar.addfile(info, _Zeros(info.size))
    url = put(local_store, "s3://models/bomb/model.tar.gz", gzip.compress(raw.getvalue(), 1))
    started = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match="more than 1048576 bytes"):
        prepare_model_dir(local_store, url, work / "models" / "bomb", max_bytes=1024 * 1024)
    assert time.monotonic() - started < 2
    assert os.listdir(work / "models") == []


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.mark.parametrize(
    "data",
    [
        b"this is not an archive at all" * 50,
        gzip.compress(b"gzip, but of plain text, not of a tar" * 50),
        b"",
        b"\x1f\x8b\x08\x00garbage-after-gzip-magic" * 10,
    ],
    ids=["text", "gzip-of-text", "empty", "broken-gzip"],
)
def test_corrupt_archive_is_refused(local_store: ObjectStore, work: Path, data: bytes) -> None:
    url = put(local_store, "s3://models/bad/model.tar.gz", data)
    with pytest.raises(UnsafeArchiveError, match="not a valid tar archive"):
        prepare_model_dir(local_store, url, work / "models" / "bad", max_bytes=10**6)
    assert os.listdir(work / "models") == []


def test_truncated_archive_is_refused(local_store: ObjectStore, work: Path) -> None:
    whole = tar_bytes([Member("a.bin", os.urandom(20_000)), Member("b.bin", os.urandom(20_000))])
    url = put(local_store, "s3://models/cut/model.tar.gz", whole[: len(whole) // 2])
    with pytest.raises(UnsafeArchiveError, match=r"truncated|not a valid tar archive"):
        prepare_model_dir(local_store, url, work / "models" / "cut", max_bytes=10**6)
    assert os.listdir(work / "models") == []


def test_failure_keeps_previous_model(local_store: ObjectStore, work: Path) -> None:
    dest = work / "models" / "m"
    dest.mkdir()
    (dest / "model.bin").write_bytes(b"previous")
    url = put(local_store, "s3://models/m/model.tar.gz", tar_bytes([Member("../evil", b"x")]))
    with pytest.raises(UnsafeArchiveError):
        prepare_model_dir(local_store, url, dest, max_bytes=1000)
    assert (dest / "model.bin").read_bytes() == b"previous"
    assert os.listdir(work / "models") == ["m"]


def test_missing_model_data_names_the_url(local_store: ObjectStore, work: Path) -> None:
    for url in ("s3://models/absent/model.tar.gz", "s3://models/absent/"):
        with pytest.raises(FileNotFoundError, match=url):
            prepare_model_dir(local_store, url, work / "models" / "x", max_bytes=1000)
    assert os.listdir(work / "models") == []


def test_uncompressed_prefix_is_copied(local_store: ObjectStore, work: Path) -> None:
    put(local_store, "s3://models/raw/model.joblib", b"w" * 300)
    put(local_store, "s3://models/raw/code/inference.py", b"def model_fn(d): ...\n")
    put(local_store, "s3://models/raw-v2/other.bin", b"not part of it")
    for url in ("s3://models/raw/", "s3://models/raw"):
        dest = work / "models" / "raw"
        prepare_model_dir(local_store, url, dest, max_bytes=1000)
        assert sorted(snapshot(dest)) == ["code", "code/inference.py", "model.joblib"]
        assert (dest / "model.joblib").read_bytes() == b"w" * 300

    with pytest.raises(UnsafeArchiveError, match="more than 100 bytes"):
        prepare_model_dir(local_store, "s3://models/raw/", work / "models" / "small", 100)
    assert not (work / "models" / "small").exists()
    assert os.listdir(work / "models") == ["raw"]


def test_single_uncompressed_object(local_store: ObjectStore, work: Path) -> None:
    url = put(local_store, "s3://models/one/weights.safetensors", b"tensor")
    dest = work / "models" / "one"
    prepare_model_dir(local_store, url, dest, max_bytes=1000, compressed=False)
    assert (dest / "weights.safetensors").read_bytes() == b"tensor"
    with pytest.raises(UnsafeArchiveError, match="is a prefix"):
        prepare_model_dir(local_store, "s3://models/one/", dest, 1000, compressed=True)


class _SlowStore:
    """The local store, but every read of an object's bytes takes 50 ms: a slow network."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    @contextlib.contextmanager
    def open(self, uri: str, mode: str = "rb") -> Iterator[io.RawIOBase]:
        with self._store.open(uri, mode) as raw:
            yield _Slow(raw)


class _Slow(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        time.sleep(0.05)
        return self._raw.read(min(n, 4096) if n > 0 else 4096)


@pytest.mark.parametrize("layout", ["archive", "prefix"])
def test_model_data_that_takes_too_long_is_abandoned(
    local_store: ObjectStore, work: Path, layout: str
) -> None:
    """ModelDataDownloadTimeoutInSeconds: reading stops once the time is spent, and
    nothing partial is left; the same data within its time unpacks."""
    data = os.urandom(200_000)  # ~50 reads of 4 KiB, 2.5 s at 50 ms each
    if layout == "archive":
        url = put(
            local_store, "s3://models/slow/model.tar.gz", tar_bytes([Member("weights.bin", data)])
        )
    else:
        url = put(local_store, "s3://models/slow/raw/weights.bin", data).rpartition("/")[0]
    slow = _SlowStore(local_store)
    with pytest.raises(ModelDataTimeout, match=r"did not download within 0.3 s"):
        prepare_model_dir(slow, url, work / "models" / "slow", max_bytes=10**7, timeout_s=0.3)
    assert os.listdir(work / "models") == []
    prepare_model_dir(local_store, url, work / "models" / "slow", max_bytes=10**7, timeout_s=60)
    assert (work / "models" / "slow" / "weights.bin").read_bytes() == data
