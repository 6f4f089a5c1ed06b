"""`modelhost images build`: the built-in model server as an image per framework, made on
a machine with no registry access.

Everything goes through the engine's Docker-compatible API (the `docker` SDK, the client
the container backend uses), not the engine's command line: the API is the same for
Docker Engine and podman's service, the image lands in the engine the server's
instances run on, and the calls it needs (import, save, load, build) all exist in it.
The build context is a tar made here (`custom_context`): the Dockerfile plus the
wheelhouse, taken from where it lies in the cache without copying it into a staging
folder. The API's classic builder handles the Dockerfile's two stages; BuildKit-only
syntax (`RUN --mount`) is avoided for that reason.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelhost.imagebuild import wheelhouse
from modelhost.imagebuild.base import (
    BASE_IMAGE,
    BuildError,
    cache_lock,
    ensure_base_image,
    has_image,
)

#: The built-in handler sets an image can run (MODELHOST_FRAMEWORK inside the image).
FRAMEWORKS = ("sklearn", "onnx", "python")
DEFAULT_TAG = "modelhost/{framework}"
DOCKERFILE = Path("docker") / "modelserver.Dockerfile"


def find_source(start: Path | None = None) -> Path:
    """The modelhost source tree the images are built from: `start`, else the tree the
    running modelhost is installed from (an editable or in-tree install)."""
    candidates = [start] if start is not None else [Path(__file__).resolve().parents[3]]
    for folder in candidates:
        if (folder / "pyproject.toml").exists() and (folder / DOCKERFILE).exists():
            return folder
    raise BuildError(
        f"{candidates[0]} is not a modelhost source tree (it needs pyproject.toml and "
        f"{DOCKERFILE}); pass --source with a checkout of modelhost"
    )


@dataclass
class Report:
    """What a build did and how long each step took (seconds), for the CLI to print."""

    base: str = ""
    interpreter: str = ""
    wheels_fetched: bool = False
    steps: dict[str, float] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)


def build_images(
    client: Any,
    frameworks: Iterable[str],
    tag: str,
    source: Path,
    cache_dir: Path,
    base: str = BASE_IMAGE,
    progress: Callable[[str], None] = lambda line: None,
) -> Report:
    """Build `modelhost/<framework>` (or `tag` with `{framework}` filled in) for each
    framework into the engine `client` speaks to."""
    report = Report()
    clock = time.monotonic()

    def step(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        report.steps[name] = round(now - clock, 2)
        clock = now

    progress(f"base image {base}")
    report.base = ensure_base_image(client, cache_dir, base)
    step("base image")
    interpreter = wheelhouse.parse_probe(
        client.containers.run(base, ["python3", "-c", wheelhouse.PROBE], remove=True).decode()
    )
    report.interpreter = f"Python {interpreter.python}, glibc {interpreter.glibc[0]}."
    report.interpreter += f"{interpreter.glibc[1]}, {interpreter.machine}"
    step("probe")
    progress(f"wheels for {report.interpreter}")
    with cache_lock(cache_dir):
        deps, report.wheels_fetched = wheelhouse.dependencies(
            source, interpreter, cache_dir / "wheels"
        )
    step("dependency wheels")
    with tempfile.TemporaryFile() as context:
        with tempfile.TemporaryDirectory(prefix="modelhost-wheel-") as folder:
            app = wheelhouse.modelhost_wheel(source, Path(folder))
            step("modelhost wheel")
            _context(context, source / DOCKERFILE, deps, app)
            step("context")
        for framework in frameworks:
            name = tag.format(framework=framework)
            progress(f"building {name}")
            context.seek(0)
            _build(client, context, name, {"BASE": base, "FRAMEWORK": framework}, progress)
            report.images.append(name)
            step(f"image {name}")
    return report


def _context(out: Any, dockerfile: Path, deps: Path, app: Path) -> None:
    """The build context: the Dockerfile and wheelhouse/{deps,app}/, as the Dockerfile
    expects them."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(dockerfile, arcname="modelserver.Dockerfile")
        for path in sorted(deps.iterdir()):
            tar.add(path, arcname=f"wheelhouse/deps/{path.name}")
        tar.add(app, arcname=f"wheelhouse/app/{app.name}")
    out.seek(0)


def _build(
    client: Any,
    context: Any,
    name: str,
    args: dict[str, str],
    progress: Callable[[str], None],
) -> None:
    lines = client.api.build(
        fileobj=context,
        custom_context=True,
        dockerfile="modelserver.Dockerfile",
        tag=name,
        buildargs=args,
        rm=True,
        forcerm=True,  # or failed steps leave their build containers behind
        pull=False,
        decode=True,
    )
    for line in lines:
        if "error" in line:
            detail = line.get("errorDetail", {}).get("message") or line["error"]
            raise BuildError(f"building {name} failed: {str(detail).strip()}")
        if text := str(line.get("stream", "")).strip():
            progress(text)
        elif "aux" in line:
            progress(json.dumps(line["aux"]))

    if not has_image(client, name):
        raise BuildError(f"the engine reported no error but holds no image {name}")
