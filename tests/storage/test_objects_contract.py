"""The object store contract, held by every implementation: the embedded store (s3://
mapped onto a local folder) and a real S3 (moto's server over HTTP). What only one of them
does (the on-disk layout, interplay with other S3 clients) is in test_objects.py and
test_s3.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelhost.storage import FsspecObjectStore, InvalidObjectURI, ObjectStore


@pytest.fixture(params=["embedded", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path, aws_config: Path) -> ObjectStore:
    if request.param == "embedded":
        return FsspecObjectStore(tmp_path / "objects")
    return FsspecObjectStore(tmp_path / "objects", request.getfixturevalue("moto").endpoint_url)


@pytest.fixture
def bucket(request: pytest.FixtureRequest, objects: ObjectStore) -> str:
    """A bucket of its own for each test (made on S3; on disk one appears on first write)."""
    return request.getfixturevalue("moto").create_bucket() if objects.uses_s3 else "test"


def test_round_trip_and_queries(objects: ObjectStore, bucket: str) -> None:
    root = f"s3://{bucket}"
    objects.put_bytes(f"{root}/models/iris/model.tar.gz", b"archive")
    objects.put_bytes(f"{root}/models/iris/code/inference.py", b"print('hi')")
    objects.put_bytes(f"{root}/models/iris.csv", b"a,b")
    objects.put_bytes(f"{root}/models/other/x", b"x")

    assert objects.get_bytes(f"{root}/models/iris/model.tar.gz") == b"archive"
    assert objects.size(f"{root}/models/iris/model.tar.gz") == 7
    with objects.open(f"{root}/models/iris/code/inference.py") as f:
        assert f.read(5) == b"print"
    assert objects.exists(f"{root}/models/iris/model.tar.gz")
    assert objects.is_file(f"{root}/models/iris/model.tar.gz")
    assert objects.exists(f"{root}/models/iris")
    assert not objects.is_file(f"{root}/models/iris")
    assert not objects.is_file(f"{root}/models/iris/model.tar.gz/")
    assert not objects.exists(f"{root}/models/nothing")


def test_listing_has_s3_key_prefix_semantics(objects: ObjectStore, bucket: str) -> None:
    root = f"s3://{bucket}"
    for key in (
        "models/iris/model.tar.gz",
        "models/iris/code/inference.py",
        "models/iris.csv",
        "models/other/x",
    ):
        objects.put_bytes(f"{root}/{key}", b"x")
    assert objects.list(f"{root}/models/iris/") == [
        f"{root}/models/iris/code/inference.py",
        f"{root}/models/iris/model.tar.gz",
    ]
    # No trailing slash: keys sharing the stem match too, as SageMaker's S3Prefix does.
    assert objects.list(f"{root}/models/iris") == [
        f"{root}/models/iris.csv",
        f"{root}/models/iris/code/inference.py",
        f"{root}/models/iris/model.tar.gz",
    ]
    assert objects.list(f"{root}/models/iris.csv") == [f"{root}/models/iris.csv"]
    assert objects.list(root) == objects.list(f"{root}/")
    assert len(objects.list(root)) == 4
    assert objects.list(f"{root}/models/nothing/") == []
    assert objects.list(f"{root}/models/nothing") == []


def test_large_objects_stream_whole(objects: ObjectStore, bucket: str) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # crosses several copy chunks
    uri = f"s3://{bucket}/in/big.bin"
    with objects.open(uri, "wb") as f:
        for start in range(0, len(big), 1024 * 1024):
            f.write(big[start : start + 1024 * 1024])
    assert objects.size(uri) == len(big)
    with objects.open(uri) as f:
        assert f.read() == big


def test_writes_land_whole_or_not_at_all(objects: ObjectStore, bucket: str) -> None:
    uri = f"s3://{bucket}/out/results/part-0.out"
    with objects.open(uri, "wb") as f:
        f.write(b"half")
        f.flush()
        # Mid-write the object does not exist yet, and nothing is listed.
        assert not objects.exists(uri)
        assert objects.list(f"s3://{bucket}/out/") == []
        f.write(b" and half")
    assert objects.get_bytes(uri) == b"half and half"

    with pytest.raises(RuntimeError), objects.open(uri, "wb") as f:
        f.write(b"broken")
        raise RuntimeError("writer failed")
    # The old object survives a failed overwrite, and nothing else appears.
    assert objects.get_bytes(uri) == b"half and half"
    assert objects.list(f"s3://{bucket}/out/") == [uri]

    fresh = f"s3://{bucket}/out/never.json"
    with pytest.raises(RuntimeError), objects.open(fresh, "wb") as f:
        f.write(b'{"half": ')
        raise RuntimeError("writer failed")
    assert not objects.exists(fresh)


def test_missing_objects_name_the_uri(objects: ObjectStore, bucket: str) -> None:
    uri = f"s3://{bucket}/models/absent/model.tar.gz"
    for call in (objects.get_bytes, objects.size, objects.open):
        with pytest.raises(FileNotFoundError, match=uri):
            call(uri)
    objects.put_bytes(f"s3://{bucket}/obj", b"x")
    with pytest.raises(FileNotFoundError, match=f"no object at s3://{bucket}/obj/x"):
        objects.size(f"s3://{bucket}/obj/x")
    with pytest.raises(FileNotFoundError, match=f"no object at s3://{bucket}/obj/x"):
        objects.get_bytes(f"s3://{bucket}/obj/x")
    objects.put_bytes(f"s3://{bucket}/dir/x", b"x")
    with pytest.raises(IsADirectoryError):
        objects.size(f"s3://{bucket}/dir")
    with pytest.raises(IsADirectoryError):
        objects.open(f"s3://{bucket}/dir/")


def test_uris_it_will_not_name_are_refused(objects: ObjectStore, tmp_path: Path) -> None:
    """Local paths (off by default: any caller could read the server's files), other
    schemes, no bucket: InvalidObjectURI, the caller's mistake, before any I/O."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    for uri in (f"file://{secret}", str(secret), "secret"):
        for call in (
            objects.get_bytes,
            objects.size,
            objects.exists,
            objects.is_file,
            objects.list,
        ):
            with pytest.raises(InvalidObjectURI, match="MODELHOST_ALLOW_LOCAL_PATHS"):
                call(uri)
        with pytest.raises(InvalidObjectURI, match="local path"):
            objects.put_bytes(uri, b"overwritten")
    assert secret.read_bytes() == b"do not read"
    with pytest.raises(InvalidObjectURI, match="unsupported object URI"):
        objects.get_bytes("gs://bucket/key")
    for uri in ("s3://", "s3:///key", "", "s3://b/k\x00"):
        with pytest.raises(InvalidObjectURI):
            objects.exists(uri)
    with pytest.raises(ValueError, match="'rb' or 'wb'"):
        objects.open("s3://b/k", "ab")
