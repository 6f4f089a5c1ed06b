"""The embedded object store: s3:// mapped onto a local folder, file:// and plain paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelhost.storage import ObjectStore
from modelhost.storage.objects import safe_join


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_local_mapping_round_trip(local_store: ObjectStore, tmp_path: Path) -> None:
    local_store.put_bytes("s3://models/iris/model.tar.gz", b"archive")
    local_store.put_bytes("s3://models/iris/code/inference.py", b"print('hi')")
    local_store.put_bytes("s3://models/iris.csv", b"a,b")
    local_store.put_bytes("s3://models/other/x", b"x")

    on_disk = tmp_path / "objects" / "models" / "iris" / "model.tar.gz"
    assert on_disk.read_bytes() == b"archive"
    assert local_store.get_bytes("s3://models/iris/model.tar.gz") == b"archive"
    assert local_store.size("s3://models/iris/model.tar.gz") == 7
    with local_store.open("s3://models/iris/code/inference.py") as f:
        assert f.read(5) == b"print"

    assert local_store.exists("s3://models/iris/model.tar.gz")
    assert local_store.is_file("s3://models/iris/model.tar.gz")
    assert not local_store.is_dir("s3://models/iris/model.tar.gz")
    assert local_store.exists("s3://models/iris")
    assert local_store.is_dir("s3://models/iris")
    assert not local_store.is_file("s3://models/iris")
    assert not local_store.exists("s3://models/nothing")
    assert not local_store.uses_s3

    # S3 key-prefix semantics: no trailing slash also matches siblings sharing the stem.
    assert local_store.list("s3://models/iris/") == [
        "s3://models/iris/code/inference.py",
        "s3://models/iris/model.tar.gz",
    ]
    assert local_store.list("s3://models/iris") == [
        "s3://models/iris.csv",
        "s3://models/iris/code/inference.py",
        "s3://models/iris/model.tar.gz",
    ]
    assert local_store.list("s3://models") == local_store.list("s3://models/")
    assert len(local_store.list("s3://models")) == 4
    assert local_store.list("s3://models/nothing/") == []
    assert local_store.list("s3://no-such-bucket/x") == []

    local_store.delete("s3://models/iris/code/inference.py")
    # Emptied folders go too, so the prefix stops existing, as on S3.
    assert not local_store.exists("s3://models/iris/code")
    local_store.delete("s3://models/iris", recursive=True)
    assert local_store.list("s3://models/") == ["s3://models/iris.csv", "s3://models/other/x"]


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/../escape",
        "s3://bucket/a/../../escape",
        "s3://bucket/a/..",
        "s3://../escape",
        "s3://./x",
        "s3://.hidden/x",
        "s3:///abs/key",
        "s3://",
    ],
)
def test_local_mapping_refuses_escape(local_store: ObjectStore, tmp_path: Path, uri: str) -> None:
    before = tree(tmp_path)
    with pytest.raises(ValueError, match=r"escape|bucket"):
        local_store.put_bytes(uri, b"evil")
    with pytest.raises(ValueError):
        local_store.exists(uri)
    assert tree(tmp_path) == before


def test_local_paths_are_refused_unless_allowed(local_store: ObjectStore,
                                                tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    for uri in (f"file://{secret}", str(secret), "secret"):
        for call in (local_store.get_bytes, local_store.size, local_store.exists):
            with pytest.raises(ValueError, match="MODELHOST_ALLOW_LOCAL_PATHS"):
                call(uri)
        with pytest.raises(ValueError, match="local path"):
            local_store.put_bytes(uri, b"overwritten")
    assert secret.read_bytes() == b"do not read"


def test_embedded_keys_too_long_for_the_disk_are_refused(local_store: ObjectStore) -> None:
    for uri in (f"s3://b/{'k' * 256}", f"s3://b/a/{'k' * 300}/c", f"s3://b/{'k/' * 2100}x"):
        with pytest.raises(ValueError, match="too long"):
            local_store.size(uri)
        with pytest.raises(ValueError, match="too long"):
            local_store.put_bytes(uri, b"x")
    local_store.put_bytes(f"s3://b/{'k' * 255}", b"x")  # the longest name a disk holds


def test_an_object_used_as_a_folder_is_missing(local_store: ObjectStore) -> None:
    local_store.put_bytes("s3://b/obj", b"x")
    with pytest.raises(FileNotFoundError, match="no object at s3://b/obj/x"):
        local_store.size("s3://b/obj/x")
    with pytest.raises(FileNotFoundError, match="no object at s3://b/obj/x"):
        local_store.get_bytes("s3://b/obj/x")


def test_file_uri_and_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local_store = ObjectStore(tmp_path / "objects", allow_local_paths=True)
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
    assert local_store.is_dir("in/sub")
    # Nothing went under the embedded root.
    assert not (tmp_path / "objects").exists()


def test_unsupported_scheme_is_refused(local_store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="unsupported object URI"):
        local_store.get_bytes("gs://bucket/key")
    with pytest.raises(ValueError, match="'rb' or 'wb'"):
        local_store.open("s3://b/k", "ab")


def test_missing_objects_name_the_uri(local_store: ObjectStore) -> None:
    uri = "s3://models/absent/model.tar.gz"
    for call in (local_store.get_bytes, local_store.size, local_store.open, local_store.delete):
        with pytest.raises(FileNotFoundError, match=uri):
            call(uri)
    with pytest.raises(FileNotFoundError, match="absent"):
        local_store.download("s3://models/absent/", Path("/nonexistent-never-created"))
    local_store.delete(uri, missing_ok=True)
    local_store.put_bytes("s3://models/dir/x", b"x")
    with pytest.raises(IsADirectoryError):
        local_store.delete("s3://models/dir")
    with pytest.raises(IsADirectoryError):
        local_store.size("s3://models/dir")


def test_local_writes_are_atomic(local_store: ObjectStore, tmp_path: Path) -> None:
    uri = "s3://out/results/part-0.out"
    with local_store.open(uri, "wb") as f:
        f.write(b"half")
        f.flush()
        # Mid-write the object does not exist yet, and the partial file is not listed.
        assert not local_store.exists(uri)
        assert local_store.list("s3://out/") == []
        f.write(b" and half")
    assert local_store.get_bytes(uri) == b"half and half"

    with pytest.raises(RuntimeError), local_store.open(uri, "wb") as f:
        f.write(b"broken")
        raise RuntimeError("writer failed")
    # The old object survives a failed overwrite and no partial file is left over.
    assert local_store.get_bytes(uri) == b"half and half"
    assert os.listdir(tmp_path / "objects" / "out" / "results") == ["part-0.out"]


def test_download_object_and_prefix(local_store: ObjectStore, tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # crosses several copy chunks
    local_store.put_bytes("s3://in/batch/big.bin", big)
    local_store.put_bytes("s3://in/batch/nested/deep/x.txt", b"x")
    local_store.put_bytes("s3://in/batch-other/y.txt", b"y")

    one = local_store.download("s3://in/batch/big.bin", tmp_path / "one")
    assert one == [tmp_path / "one" / "big.bin"]
    assert one[0].read_bytes() == big

    many = local_store.download("s3://in/batch", tmp_path / "many")
    assert many == [tmp_path / "many" / "big.bin", tmp_path / "many" / "nested/deep/x.txt"]
    assert (tmp_path / "many" / "nested" / "deep" / "x.txt").read_bytes() == b"x"
    assert not (tmp_path / "many" / "y.txt").exists()


def test_safe_join_refuses_keys_that_climb_out(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b", what="x") == tmp_path / "a" / "b"
    for rel in ("../x", "a/../../x", "/etc/passwd", "", "."):
        with pytest.raises(ValueError):
            safe_join(tmp_path, rel, what="object s3://b/k")


def test_from_environment_defaults_to_embedded(
    aws_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ObjectStore.from_environment(tmp_path / "objects")
    assert not store.uses_s3
    assert store.local_root == (tmp_path / "objects").resolve()

    # MODELHOST_S3=local wins over an endpoint meant for other AWS clients.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("MODELHOST_S3", "local")
    assert not ObjectStore.from_environment(tmp_path / "objects").uses_s3

    monkeypatch.setenv("MODELHOST_S3", "sometimes")
    with pytest.raises(ValueError, match="MODELHOST_S3"):
        ObjectStore.from_environment(tmp_path / "objects")

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("MODELHOST_S3", "aws")
    aws = ObjectStore.from_environment(tmp_path / "objects")
    assert aws.uses_s3 and aws.s3_endpoint_url is None
