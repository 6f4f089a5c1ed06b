"""Images of modelhost's own model server, built on a machine with no registry access:
a Debian base made locally (`base`), the wheels fetched on the host (`wheelhouse`), one
image per framework built through the engine's API (`build`)."""

from __future__ import annotations

from modelhost.imagebuild.base import (
    BASE_IMAGE,
    BuildError,
    debian_mirror,
    default_cache_dir,
    ensure_base_image,
)
from modelhost.imagebuild.build import DEFAULT_TAG, FRAMEWORKS, Report, build_images, find_source

__all__ = [
    "BASE_IMAGE",
    "DEFAULT_TAG",
    "FRAMEWORKS",
    "BuildError",
    "Report",
    "build_images",
    "debian_mirror",
    "default_cache_dir",
    "ensure_base_image",
    "find_source",
]
