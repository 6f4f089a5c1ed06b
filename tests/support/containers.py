"""A real podman for container-backend tests: its Docker-compatible service on a socket of
the test's own, and images built here without any registry.

No registry is reachable from CI, so the base image is made from the Debian repository
apt already uses (mmdebstrap, then an import) by modelhost's own image builder and kept as
a saved tar under ~/.cache/modelhost/images, where `modelhost images build` keeps it too:
only the first run on a machine spends the ~45 s.
Whatever is missing (podman, mmdebstrap with no cached base, a runtime that cannot start
a container) skips the test with the reason; `scripts/test` installs and configures it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelhost import imagebuild
from modelhost.imagebuild import BuildError
from modelhost.imagebuild import ensure_base_image as ensure_base

BASE_IMAGE = imagebuild.BASE_IMAGE
BYOC_IMAGE = "modelhost-test/byoc:1"
BYOC_DIR = Path(__file__).parent / "byoc"
CACHE_DIR = imagebuild.default_cache_dir()


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def _image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def ensure_base_image() -> None:
    """`BASE_IMAGE` in podman's storage: already there, or loaded from the cache or made
    by modelhost's own image builder (`modelhost images build` does the same), through a
    podman service of its own."""
    if _image_exists(BASE_IMAGE):
        return
    from docker.client import DockerClient

    with tempfile.TemporaryDirectory() as folder, podman_service(Path(folder)) as url:
        client = DockerClient(base_url=url, timeout=900)
        try:
            ensure_base(client, CACHE_DIR)
        except BuildError as exc:
            pytest.skip(f"no base image: {exc}")
        finally:
            client.close()


def build_image(
    tag: str, context: Path, containerfile: str = "Containerfile", *build_args: str
) -> None:
    args = [arg for value in build_args for arg in ("--build-arg", value)]
    podman("build", "-q", "-f", str(context / containerfile), "-t", tag, *args, str(context))


def engine_usable() -> None:
    """Skip unless podman is installed and can run a container from the base image."""
    if shutil.which("podman") is None:
        pytest.skip(
            "podman is not installed (scripts/test installs it: apt-get install "
            "podman runc mmdebstrap)"
        )
    ensure_base_image()
    ran = podman("run", "--rm", BASE_IMAGE, "true", check=False, timeout=120)
    if ran.returncode != 0:
        pytest.skip(
            f"podman cannot run a container here (see /etc/containers/"
            f"containers.conf, written by scripts/test): {ran.stderr.strip()}"
        )


@contextlib.contextmanager
def podman_service(folder: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`podman system service` on a socket in `folder` (with `env` added to its
    environment); yields its unix:// URL."""
    socket_path = folder / "podman.sock"
    url = f"unix://{socket_path}"
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("podman system service did not create its socket")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def containers_labelled(label: str) -> list[dict[str, object]]:
    """Every container (running or not) carrying `label` (KEY=VALUE)."""
    listed = podman("ps", "-a", "--filter", f"label={label}", "--format", "json").stdout
    return list(json.loads(listed or "[]"))


def wait_until(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
