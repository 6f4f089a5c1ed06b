"""The object store against a real S3 endpoint (moto server over HTTP): what it writes other
S3 clients read and the reverse, and `open_objects` finding the endpoint every way AWS
tools accept (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the config file). The contract both
stores hold is in test_objects_contract.py."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from modelhost.config import Settings
from modelhost.storage import (
    FsspecObjectStore,
    ObjectStore,
    configured_s3_endpoint,
    open_objects,
    prepare_model_dir,
)
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


def test_objects_are_shared_with_other_s3_clients(
    s3_store: ObjectStore, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    assert_round_trip(s3_store, moto, bucket)
    assert not (tmp_path / "objects").exists()  # nothing went to the embedded root


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_endpoint_from_environment_variable(
    variable: str,
    moto: MotoServer,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, moto.endpoint_url)
    store = open_objects(Settings(data_dir=tmp_path))
    assert isinstance(store, FsspecObjectStore)
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
    config: str,
    moto: MotoServer,
    bucket: str,
    aws_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aws_config.write_text(config.format(url=moto.endpoint_url))
    if "profile dev" in config:
        monkeypatch.setenv("AWS_PROFILE", "dev")
    assert configured_s3_endpoint() == moto.endpoint_url
    # The same answer botocore itself gives an S3 client (a fresh session: boto3's
    # default one caches the config file it read first).
    assert boto3.session.Session().client("s3").meta.endpoint_url == moto.endpoint_url
    store = open_objects(Settings(data_dir=tmp_path))
    assert_round_trip(store, moto, bucket)


def test_broken_aws_config_is_reported(
    aws_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(ValueError, match=r"S3 endpoint.*nope"):
        open_objects(Settings(data_dir=tmp_path))
    monkeypatch.delenv("AWS_PROFILE")
    aws_config.write_text("[default]\nservices = missing\n")
    with pytest.raises(ValueError, match="missing"):
        configured_s3_endpoint()


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
