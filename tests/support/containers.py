"""A real podman for container-backend tests: its Docker-compatible service on a socket of
the test's own, and images built here without any registry.

No registry is reachable from CI, so the base image is made from the Debian repository
apt already uses (mmdebstrap, then `podman import`) and kept as a `podman save` tar under
~/.cache/modelhost-test-images, so only the first run on a machine spends the ~45 s.
Whatever is missing (podman, mmdebstrap with no cached base, a runtime that cannot start
a container) skips the test with the reason; `scripts/test` installs and configures it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BASE_IMAGE = "modelhost-test/base:bookworm"
BYOC_IMAGE = "modelhost-test/byoc:1"
BYOC_DIR = Path(__file__).parent / "byoc"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelhost-test-images"


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def debian_mirror() -> str:
    """The Debian mirror apt's own sources name (deb822 or one-line form)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        if match := re.search(r"^URIs:\s*(\S+)", path.read_text(), re.M):
            return match.group(1)
    with contextlib.suppress(OSError):
        text = Path("/etc/apt/sources.list").read_text()
        if match := re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            return match.group(1)
    return "http://deb.debian.org/debian"


def _image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def ensure_base_image() -> None:
    """`BASE_IMAGE` in podman's storage: already there, loaded from the cache, or built
    (by one test process at a time: the others wait on the cache's lock)."""
    if _image_exists(BASE_IMAGE):
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _load_or_build_base()


def _load_or_build_base() -> None:
    if _image_exists(BASE_IMAGE):
        return
    cached = CACHE_DIR / "base-bookworm-python3.tar"
    if (
        cached.exists()
        and podman("load", "-i", str(cached), check=False).returncode == 0
        and _image_exists(BASE_IMAGE)
    ):
        return
    if shutil.which("mmdebstrap") is None:
        pytest.skip("no base image cached and mmdebstrap is missing (apt-get install mmdebstrap)")
    with tempfile.TemporaryDirectory() as work:
        rootfs = Path(work) / "rootfs.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=essential",
                "--include=python3",
                "bookworm",
                str(rootfs),
                f"deb {debian_mirror()} bookworm main",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        podman("import", "--change", 'CMD ["/bin/bash"]', str(rootfs), BASE_IMAGE)
    partial = cached.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    podman("save", "-o", str(partial), BASE_IMAGE)
    partial.rename(cached)


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
