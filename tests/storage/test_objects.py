"""What only the embedded object store does: s3:// mapped onto a local folder, file:// and
plain paths, and how the settings pick it (the contract both stores hold is in
test_objects_contract.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelhost.config import Settings
from modelhost.storage import FsspecObjectStore, open_objects
from modelhost.storage.objects import safe_join


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_s3_uris_map_onto_the_local_root(local_store: FsspecObjectStore, tmp_path: Path) -> None:
    local_store.put_bytes("s3://models/iris/model.tar.gz", b"archive")
    on_disk = tmp_path / "objects" / "models" / "iris" / "model.tar.gz"
    assert on_disk.read_bytes() == b"archive"
    assert not local_store.uses_s3
    assert local_store.list("s3://no-such-bucket/x") == []


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/../escape",
        "s3://bucket/a/../../escape",
        "s3://bucket/a/..",
        "s3://../escape",
        "s3://./x",
        "s3://.hidden/x",
    ],
)
def test_local_mapping_refuses_escape(
    local_store: FsspecObjectStore, tmp_path: Path, uri: str
) -> None:
    before = tree(tmp_path)
    with pytest.raises(ValueError, match=r"escape|bucket"):
        local_store.put_bytes(uri, b"evil")
    with pytest.raises(ValueError):
        local_store.exists(uri)
    assert tree(tmp_path) == before


def test_embedded_keys_too_long_for_the_disk_are_refused(local_store: FsspecObjectStore) -> None:
    for uri in (f"s3://b/{'k' * 256}", f"s3://b/a/{'k' * 300}/c", f"s3://b/{'k/' * 2100}x"):
        with pytest.raises(ValueError, match="too long"):
            local_store.size(uri)
        with pytest.raises(ValueError, match="too long"):
            local_store.put_bytes(uri, b"x")
    local_store.put_bytes(f"s3://b/{'k' * 255}", b"x")  # the longest name a disk holds


def test_file_uri_and_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local_store = FsspecObjectStore(tmp_path / "objects", allow_local_paths=True)
    data = tmp_path / "data"
    local_store.put_bytes(f"file://{data}/in/a.jsonl", b"1\n")
    local_store.put_bytes(f"{data}/in/sub/b.jsonl", b"2\n")
    assert (data / "in" / "a.jsonl").read_bytes() == b"1\n"
    assert local_store.get_bytes(f"{data}/in/a.jsonl") == b"1\n"
    assert local_store.get_bytes(f"file://{data}/in/sub/b.jsonl") == b"2\n"

    # Listings answer in the caller's own style.
    assert local_store.list(f"file://{data}/in") == [
        f"file://{data}/in/a.jsonl",
        f"file://{data}/in/sub/b.jsonl",
    ]
    assert local_store.list(str(data / "in")) == [
        f"{data}/in/a.jsonl",
        f"{data}/in/sub/b.jsonl",
    ]
    assert local_store.list(f"{data}/in/a.jsonl") == [f"{data}/in/a.jsonl"]

    monkeypatch.chdir(data)
    assert local_store.get_bytes("in/a.jsonl") == b"1\n"
    assert local_store.exists("in/sub") and not local_store.is_file("in/sub")
    # Nothing went under the embedded root.
    assert not (tmp_path / "objects").exists()


def test_a_failed_local_write_leaves_no_partial_file(
    local_store: FsspecObjectStore, tmp_path: Path
) -> None:
    uri = "s3://out/results/part-0.out"
    local_store.put_bytes(uri, b"whole")
    with pytest.raises(RuntimeError), local_store.open(uri, "wb") as f:
        f.write(b"broken")
        raise RuntimeError("writer failed")
    assert os.listdir(tmp_path / "objects" / "out" / "results") == ["part-0.out"]


def test_objects_landing_under_the_root_are_reported(tmp_path: Path) -> None:
    """The embedded S3 API caches listings: it hears of each object the store puts under
    the root, once it is in place, and of nothing else (a write that failed, a file
    elsewhere)."""
    root = tmp_path / "objects"
    store = FsspecObjectStore(root, allow_local_paths=True)
    seen: list[set[str]] = []
    store.on_local_write(lambda: seen.append({p for p in tree(root) if p.endswith(".out")}))
    store.put_bytes("s3://out/results/part-0.out", b"whole")
    assert seen == [{"out/results/part-0.out"}]
    with pytest.raises(RuntimeError), store.open("s3://out/other.out", "wb") as f:
        f.write(b"broken")
        raise RuntimeError("writer failed")
    store.put_bytes(str(tmp_path / "elsewhere" / "a.out"), b"local")
    assert len(seen) == 1
    store.put_bytes(f"file://{root}/out/by-path.out", b"under the root")
    assert seen[1] == {"out/results/part-0.out", "out/by-path.out"}


def test_safe_join_refuses_keys_that_climb_out(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b", what="x") == tmp_path / "a" / "b"
    for rel in ("../x", "a/../../x", "/etc/passwd", "", "."):
        with pytest.raises(ValueError):
            safe_join(tmp_path, rel, what="object s3://b/k")


def test_open_objects_defaults_to_embedded(
    aws_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_objects(Settings(data_dir=tmp_path))
    assert not store.uses_s3
    store.put_bytes("s3://b/k", b"x")
    assert (tmp_path / "objects" / "b" / "k").read_bytes() == b"x"

    # MODELHOST_S3=local wins over an endpoint meant for other AWS clients.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("MODELHOST_S3", "local")
    assert not open_objects(Settings(data_dir=tmp_path)).uses_s3

    monkeypatch.setenv("MODELHOST_S3", "sometimes")
    with pytest.raises(ValueError, match="MODELHOST_S3 must be 'auto', 'local' or 'aws'"):
        Settings(data_dir=tmp_path)

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("MODELHOST_S3", "aws")
    aws = open_objects(Settings(data_dir=tmp_path))
    assert isinstance(aws, FsspecObjectStore)
    assert aws.uses_s3 and aws.s3_endpoint_url is None
