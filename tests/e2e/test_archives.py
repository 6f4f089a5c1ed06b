"""Model archives that try to write outside the model dir fail the endpoint, safely."""

from __future__ import annotations

import io
import tarfile

import pytest

from tests.support.endpoints import deploy, wait_for_status


def _tar(add) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        add(archive)
    return buffer.getvalue()


def _file(archive: tarfile.TarFile, name: str, data: bytes = b"owned") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _link(archive: tarfile.TarFile, name: str, target: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    archive.addfile(info)


ATTACKS = {
    "traversal": (lambda a: _file(a, "../../escaped.txt"), "escapes"),
    "absolute": (lambda a: _file(a, "/tmp/modelhost-absolute-escape.txt"), "absolute"),
    "symlink": (lambda a: _link(a, "evil", "/etc/passwd", tarfile.SYMTYPE), "link"),
    "hardlink": (lambda a: _link(a, "evil", "../../outside", tarfile.LNKTYPE), "link"),
    "corrupt": (None, "tar"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_unsafe_archive_fails_the_endpoint(attack: str, server, sagemaker) -> None:
    add, fragment = ATTACKS[attack]
    payload = b"definitely not a tarball" if add is None else _tar(add)
    key = f"attacks/{attack}/model.tar.gz"
    path = server.data_dir / "objects" / "models" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    before = sorted(p.name for p in server.data_dir.parent.iterdir())

    name = deploy(sagemaker, f"s3://models/{key}", wait=False)
    described = wait_for_status(sagemaker, name, {"Failed", "InService"})
    assert described["EndpointStatus"] == "Failed"
    assert fragment in described["FailureReason"].lower()
    assert sorted(p.name for p in server.data_dir.parent.iterdir()) == before
    assert not (server.data_dir / "escaped.txt").exists()
    assert not (server.data_dir.parent / "escaped.txt").exists()
    models = server.data_dir / "models"
    assert not any(p.name.startswith(name) for p in models.iterdir()) if models.exists() else True


def test_missing_model_data_fails_with_reason(sagemaker) -> None:
    name = deploy(sagemaker, "s3://models/nowhere/model.tar.gz", wait=False)
    described = wait_for_status(sagemaker, name, {"Failed", "InService"})
    assert described["EndpointStatus"] == "Failed"
    assert "s3://models/nowhere/model.tar.gz" in described["FailureReason"]


def test_oversize_archive_is_refused(tmp_path) -> None:
    """The size cap is per server; run one with a 1 MB cap."""
    from tests.support.models import iris_model_bytes, put_model
    from tests.support.server import ServerProcess

    data = tmp_path / "data"
    put_model(
        data, "big", {"model.joblib": iris_model_bytes(), "padding.bin": b"\0" * (3 * 1024 * 1024)}
    )
    server = ServerProcess(data, env={"MODELHOST_MAX_MODEL_BYTES": str(1024 * 1024)}).start()
    try:
        sagemaker = server.client("sagemaker")
        name = deploy(sagemaker, "s3://models/big/model.tar.gz", wait=False)
        described = wait_for_status(sagemaker, name, {"Failed", "InService"})
        assert described["EndpointStatus"] == "Failed"
        assert "more than 1048576 bytes" in described["FailureReason"]
    finally:
        server.stop()


def test_model_that_cannot_load_fails_with_its_error(sagemaker, iris_model_url: str) -> None:
    """The python image needs code/inference.py; the instance's own message reaches
    DescribeEndpoint's FailureReason."""
    name = deploy(sagemaker, iris_model_url, image="modelhost/python", wait=False)
    described = wait_for_status(sagemaker, name, {"Failed", "InService"})
    assert described["EndpointStatus"] == "Failed"
    assert "inference.py" in described["FailureReason"]
    assert len(described["FailureReason"]) <= 1024
