"""What a model's `Image` names: one of modelhost's built-in model servers, or an OCI
image a container engine runs, and where that image is found.

SageMaker models name their image by an ECR URI (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/
REPO:TAG`). No ECR is reachable from a self-hosted machine, so such a URI is looked up
locally under the full name and under `REPO:TAG` (what `docker tag` / `podman tag` would
have named an image built or loaded here), and only then pulled from whatever registry
the engine is configured to pull from.

modelhost's own images (`modelhost/sklearn`, `modelhost/onnx`, `modelhost/python`) and
AWS's framework images (`sagemaker-scikit-learn`, `pytorch-inference`, ...) have always
run on the built-in model server; they keep doing so unless such an image exists locally.
"""

from __future__ import annotations

import re

_FRAMEWORK_WORDS = ("sklearn", "scikit", "onnx")
_ECR = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/(?P<rest>.+)$")


def ecr_repository(image: str) -> str | None:
    """`REPO:TAG` (or `REPO@DIGEST`) of an ECR-style URI; None for any other name."""
    match = _ECR.match(image)
    return match.group("rest") if match else None


def repository(image: str) -> str:
    """The image's repository path without tag or digest (nor an ECR registry host):
    `123.dkr.ecr.r.amazonaws.com/team/model:1` -> `team/model`."""
    name = ecr_repository(image) or image
    name = name.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    if ":" in tail:
        tail = tail.rsplit(":", 1)[0]
    return f"{head}/{tail}" if head else tail


def candidates(image: str) -> list[str]:
    """The local names an image may be found under, in order."""
    names = [image]
    if (short := ecr_repository(image)) is not None:
        names.append(short)
    return names


def is_builtin(image: str) -> bool:
    """Whether the name means one of the built-in model servers when no such image is
    present: modelhost's own images, AWS's framework images (their repositories are
    `sagemaker-*` or `*-inference*`), and any name naming scikit-learn or ONNX (whose
    default handlers the built-in server has)."""
    repo = repository(image).lower()
    last = repo.rsplit("/", 1)[-1]
    return (
        repo.startswith("modelhost/")
        or last.startswith("sagemaker-")
        or "-inference" in last
        or any(word in last for word in _FRAMEWORK_WORDS)
    )


class ImageMissing(OSError):
    """No local image by any of the names, and the pull failed: the endpoint fails with
    this message, which names the image."""

    def __init__(self, image: str, pull_error: str) -> None:
        names = ", ".join(candidates(image))
        super().__init__(
            f"image {image} not found: no local image named {names}, and "
            f"pulling it failed: {pull_error}"
        )
        self.image = image
