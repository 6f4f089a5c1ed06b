"""The base every model server image starts `FROM`, made here from the Debian repository.

No registry may be reachable (an air-gapped host, CI behind a proxy whose CA containers
do not trust), so the base is not pulled: `mmdebstrap` makes a Debian root file system
with Python from the mirror apt already uses, and the engine imports it. That takes about
45 s, so the image is also kept as a saved tar under a cache folder: a machine whose
engine lost it (a fresh podman storage, another engine) loads it in seconds instead.
One builder at a time: the others wait on the cache's lock and then find it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The Debian release and what it must hold: python3 (3.11 in bookworm) for the server,
#: and libstdc++, which manylinux wheels (numpy, onnxruntime) may expect of the system.
SUITE = "bookworm"
PACKAGES = ("python3", "libstdc++6")
#: The tag names the release and a revision of `PACKAGES`: bump it when they change, or a
#: machine keeps using the base it made (or cached) before.
BASE_IMAGE = f"modelhost/base:{SUITE}-2"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/modelhost/images` (~/.cache/modelhost/images): the base image's
    saved tar and the wheels, shared by every build on the machine."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "modelhost" / "images"


class BuildError(RuntimeError):
    """An image could not be made; the message says what failed and how to fix it."""


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


def has_image(client: Any, name: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


@contextlib.contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """The cache folder to this build alone: another one waits here, then finds what
    this one made."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_base_image(client: Any, cache_dir: Path, name: str = BASE_IMAGE) -> str:
    """`name` in the engine `client` speaks to: already there, loaded from the cache, or
    made and cached. Returns how it got there ("present", "loaded", "built")."""
    if has_image(client, name):
        return "present"
    with cache_lock(cache_dir):
        if has_image(client, name):
            return "present"
        cached = cache_dir / f"{name.replace('/', '+').replace(':', '+')}.tar"
        if cached.exists():
            try:
                with cached.open("rb") as tar:
                    client.api.load_image(tar)
            except Exception as exc:  # a damaged cache is made anew
                logger.warning("the cached base image %s did not load: %s", cached, exc)
            if has_image(client, name):
                return "loaded"
        _make(client, name)
        partial = cached.with_suffix(".partial")
        with partial.open("wb") as out:
            for chunk in client.images.get(name).save(named=True):
                out.write(chunk)
        partial.rename(cached)
        return "built"


def _make(client: Any, name: str) -> None:
    if shutil.which("mmdebstrap") is None:
        raise BuildError(
            f"the base image {name} is missing and mmdebstrap is not installed to make it "
            "(apt-get install mmdebstrap)"
        )
    with tempfile.TemporaryDirectory(prefix="modelhost-base-") as work:
        rootfs = Path(work) / "rootfs.tar"
        made = subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=essential",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
                f"deb {debian_mirror()} {SUITE} main",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if made.returncode != 0:
            raise BuildError(f"mmdebstrap could not make the base image: {made.stderr.strip()}")
        client.api.import_image_from_file(
            str(rootfs), repository=name, changes=['CMD ["/bin/bash"]']
        )
    if not has_image(client, name):
        raise BuildError(f"the engine did not keep the imported base image {name}")
