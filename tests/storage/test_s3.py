"""The object store against a real S3 endpoint (moto server over HTTP), configured every
way AWS tools accept: explicit URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, config file."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from modelhost.storage import ObjectStore, configured_s3_endpoint, prepare_model_dir
from tests.support.models import model_tarball
from tests.support.moto import MotoServer


def assert_round_trip(store: ObjectStore, moto: MotoServer, bucket: str) -> None:
    """Write through the store, read back through boto3 (and vice versa)."""
    assert store.uses_s3
    store.put_bytes(f"s3://{bucket}/models/m1/model.tar.gz", b"tarball")
    s3 = moto.s3_client()
    body = s3.get_object(Bucket=bucket, Key="models/m1/model.tar.gz")["Body"].read()
    assert body == b"tarball"

    s3.put_object(Bucket=bucket, Key="models/m1/code/inference.py", Body=b"code")
    assert store.get_bytes(f"s3://{bucket}/models/m1/code/inference.py") == b"code"
    assert store.list(f"s3://{bucket}/models/m1/") == [
        f"s3://{bucket}/models/m1/code/inference.py",
        f"s3://{bucket}/models/m1/model.tar.gz",
    ]


def test_explicit_endpoint(s3_store: ObjectStore, moto: MotoServer, bucket: str,
                           tmp_path: Path) -> None:
    assert_round_trip(s3_store, moto, bucket)
    store = s3_store
    store.put_bytes(f"s3://{bucket}/data.csv", b"1,2")
    assert store.size(f"s3://{bucket}/data.csv") == 3
    assert store.is_file(f"s3://{bucket}/data.csv")
    assert store.is_dir(f"s3://{bucket}/models")
    assert store.exists(f"s3://{bucket}/models/m1")
    assert not store.exists(f"s3://{bucket}/nothing")
    # Key-prefix listing, as S3 and SageMaker's S3Prefix define it.
    assert store.list(f"s3://{bucket}/data") == [f"s3://{bucket}/data.csv"]
    assert len(store.list(f"s3://{bucket}")) == 3
    # Nothing went to the embedded root.
    assert not (tmp_path / "objects").exists()

    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/absent"):
        store.get_bytes(f"s3://{bucket}/absent")
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/absent"):
        store.size(f"s3://{bucket}/absent")

    written = store.download(f"s3://{bucket}/models/m1", tmp_path / "dl")
    assert written == [tmp_path / "dl/code/inference.py", tmp_path / "dl/model.tar.gz"]
    assert (tmp_path / "dl/code/inference.py").read_bytes() == b"code"

    # A writer that fails inside `with` leaves no object, as locally.
    with pytest.raises(RuntimeError), store.open(f"s3://{bucket}/out/result.json", "wb") as f:
        f.write(b'{"half": ')
        raise RuntimeError("writer failed")
    assert not store.exists(f"s3://{bucket}/out/result.json")
    with store.open(f"s3://{bucket}/out/result.json", "wb") as f:
        f.write(b"{}")
    assert store.get_bytes(f"s3://{bucket}/out/result.json") == b"{}"
    store.delete(f"s3://{bucket}/out", recursive=True)

    store.delete(f"s3://{bucket}/models", recursive=True)
    assert store.list(f"s3://{bucket}/") == [f"s3://{bucket}/data.csv"]
    store.delete(f"s3://{bucket}/data.csv")
    assert not store.exists(f"s3://{bucket}/data.csv")


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_endpoint_from_environment_variable(
    variable: str, moto: MotoServer, bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, moto.endpoint_url)
    store = ObjectStore.from_environment(tmp_path / "objects")
    assert store.s3_endpoint_url == moto.endpoint_url
    assert_round_trip(store, moto, bucket)


def test_service_specific_variable_beats_global(
    moto: MotoServer, aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint_url)
    assert configured_s3_endpoint() == moto.endpoint_url
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert configured_s3_endpoint() is None


@pytest.mark.parametrize(
    "config",
    [
        # services section, as `aws configure` documents for service-specific endpoints
        "[default]\nservices = local\n[services local]\ns3 =\n  endpoint_url = {url}\n",
        # a profile-wide endpoint_url
        "[default]\nendpoint_url = {url}\n",
        # a named profile chosen by AWS_PROFILE; [default] points elsewhere
        "[default]\nendpoint_url = http://127.0.0.1:9\n"
        "[profile dev]\nservices = dev-services\n"
        "[services dev-services]\ns3 =\n  endpoint_url = {url}\n"
        "sagemaker =\n  endpoint_url = http://127.0.0.1:9\n",
    ],
    ids=["services-section", "profile-endpoint", "named-profile"],
)
def test_endpoint_from_aws_config_file(
    config: str, moto: MotoServer, bucket: str, aws_config: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aws_config.write_text(config.format(url=moto.endpoint_url))
    if "profile dev" in config:
        monkeypatch.setenv("AWS_PROFILE", "dev")
    assert configured_s3_endpoint() == moto.endpoint_url
    # The same answer botocore itself gives an S3 client (a fresh session: boto3's
    # default one caches the config file it read first).
    assert boto3.session.Session().client("s3").meta.endpoint_url == moto.endpoint_url
    store = ObjectStore.from_environment(tmp_path / "objects")
    assert_round_trip(store, moto, bucket)


def test_broken_aws_config_is_reported(
    aws_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(ValueError, match=r"S3 endpoint.*nope"):
        ObjectStore.from_environment(tmp_path / "objects")
    monkeypatch.delenv("AWS_PROFILE")
    aws_config.write_text("[default]\nservices = missing\n")
    with pytest.raises(ValueError, match="missing"):
        configured_s3_endpoint()


def test_explicit_url_wins_over_environment(
    moto: MotoServer, aws_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("MODELHOST_S3", "local")
    store = ObjectStore.from_environment(tmp_path / "objects", moto.endpoint_url)
    assert store.s3_endpoint_url == moto.endpoint_url


def test_model_archive_streams_from_s3(
    s3_store: ObjectStore, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    files = {"model.bin": b"w" * 5000, "code/inference.py": b"def model_fn(d):\n"}
    moto.s3_client().put_object(Bucket=bucket, Key="m/model.tar.gz", Body=model_tarball(files))
    moto.s3_client().put_object(Bucket=bucket, Key="raw/weights/a.bin", Body=b"a")

    dest = tmp_path / "models" / "m"
    prepare_model_dir(s3_store, f"s3://{bucket}/m/model.tar.gz", dest, max_bytes=10**6)
    assert (dest / "model.bin").read_bytes() == b"w" * 5000
    assert (dest / "code" / "inference.py").exists()

    raw = tmp_path / "models" / "raw"
    prepare_model_dir(s3_store, f"s3://{bucket}/raw", raw, max_bytes=10**6)
    assert (raw / "weights" / "a.bin").read_bytes() == b"a"
