"""Images pulled from a registry: an endpoint whose image is not on the machine waits for
the engine to pull it, shows the pull in DescribeEndpoint and in `modelhost endpoints
describe`, then serves; an image the registry does not have fails the endpoint with the
engine's own pull error, naming the image.

The registry is a real one on this machine (tests.support.registry), reached by podman
over plain HTTP as it would reach any registry, and held mid-pull by a gate so the test
sees the pull in progress whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.containers import (
    BASE_IMAGE,
    BYOC_DIR,
    BYOC_IMAGE,
    build_image,
    engine_usable,
    podman,
    podman_service,
    wait_until,
)
from tests.support.endpoints import deploy, undeploy, unique, wait_for_status
from tests.support.models import put_model
from tests.support.registry import Registry, local_registry, registries_conf
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.timeout(600)

MODEL_FILES = {"model.txt": b"weights from the artifact"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    engine_usable()
    build_image(BYOC_IMAGE, BYOC_DIR, "Containerfile", f"BASE={BASE_IMAGE}")
    with local_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("podman")
    conf = registries_conf(folder, registry)
    with (
        podman_service(folder, env={"CONTAINERS_REGISTRIES_CONF": str(conf)}) as engine,
        running_server(
            tmp_path_factory.mktemp("pulls") / "data", env={"MODELHOST_CONTAINER_HOST": engine}
        ) as process,
    ):
        yield process


def _pushed_image(registry: Registry, folder: Path) -> str:
    """A new image (the BYOC image and a layer of its own) in the registry and not on
    this machine; returns its name."""
    (folder / "layer").write_bytes(os.urandom(4 * 1024 * 1024))
    (folder / "Containerfile").write_text(f"FROM {BYOC_IMAGE}\nCOPY layer /opt/layer\n")
    name = f"{registry.host}/modelhost-test/pulled:{unique('v')}"
    build_image(name, folder)
    podman("push", "-q", "--tls-verify=false", name)
    podman("rmi", name)
    return name


def test_pull_shows_progress_then_the_endpoint_serves(
    server: ServerProcess, registry: Registry, tmp_path: Path
) -> None:
    sagemaker = server.client("sagemaker")
    image = _pushed_image(registry, tmp_path)
    registry.hold()
    try:
        name = deploy(
            sagemaker,
            put_model(server.data_dir, unique("pull"), MODEL_FILES),
            image=image,
            wait=False,
        )

        def pulling() -> str | None:
            described = sagemaker.describe_endpoint(EndpointName=name)
            assert described["EndpointStatus"] == "Creating", described.get("FailureReason")
            for status in described["ProductionVariants"][0].get("VariantStatus", []):
                if status["StatusMessage"].startswith(f"Pulling image {image}"):
                    assert status["Status"] == "Creating"
                    return str(status["StatusMessage"])
            return None

        wait_until(lambda: pulling() is not None, "the pull in DescribeEndpoint")
        shown = run_cli("endpoints", "describe", name, url=server.url)
        assert shown.returncode == 0, shown.stderr
        assert "Pulling image" in shown.stdout and "Status" in shown.stdout
    finally:
        registry.open()
    described = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert "VariantStatus" not in described["ProductionVariants"][0]
    runtime = server.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Body="{}")
    assert json.loads(answer["Body"].read())["server"] == "byoc"
    # The pull is in the instance's log too.
    [log] = (server.data_dir / "logs" / name).glob("*.log")
    assert f"[modelhost] Pulling image {image}" in log.read_text()
    undeploy(sagemaker, name)
    podman("rmi", image)  # the pulled image, no longer used


def test_image_the_registry_lacks_fails_with_the_pull_error(
    server: ServerProcess, registry: Registry
) -> None:
    sagemaker = server.client("sagemaker")
    image = f"{registry.host}/modelhost-test/absent:1"
    url = put_model(server.data_dir, unique("pull"), MODEL_FILES)
    name = deploy(sagemaker, url, image=image, wait=False)
    described = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert image in reason and "pulling it failed" in reason
    assert "manifest unknown" in reason  # the registry's answer, through the engine


def test_a_stalled_pull_fails_the_endpoint_after_the_pull_timeout(
    registry: Registry, tmp_path: Path
) -> None:
    """The registry holds the pull mid-way and never lets go: the endpoint fails, naming
    the image and MODELHOST_IMAGE_PULL_TIMEOUT, instead of staying Creating."""
    image = _pushed_image(registry, tmp_path)
    folder = tmp_path / "podman"
    folder.mkdir()
    conf = registries_conf(folder, registry)
    registry.hold()
    try:
        with (
            podman_service(folder, env={"CONTAINERS_REGISTRIES_CONF": str(conf)}) as engine,
            running_server(
                tmp_path / "data",
                env={"MODELHOST_CONTAINER_HOST": engine, "MODELHOST_IMAGE_PULL_TIMEOUT": "5"},
            ) as server,
        ):
            sagemaker = server.client("sagemaker")
            url = put_model(server.data_dir, unique("stall"), MODEL_FILES)
            name = deploy(sagemaker, url, image=image, wait=False)
            described = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
            assert described["EndpointStatus"] == "Failed"
            reason = described["FailureReason"]
            assert image in reason, reason
            assert "did not finish within 5 seconds (MODELHOST_IMAGE_PULL_TIMEOUT)" in reason
            assert registry.sent[0] > 0  # the pull had started: it stalled, it did not fail
    finally:
        registry.open()
