"""`modelhost images`: the built-in model server as container images, built here.

The images go into the engine the container backend uses (the same address:
MODELHOST_CONTAINER_HOST, else DOCKER_HOST, else the usual sockets), so a model naming
`modelhost/sklearn` runs in a container once the image exists there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.imagebuild.build import DEFAULT_TAG

images_app = typer.Typer(
    help="Container images of the built-in model server.", no_args_is_help=True
)

#: Seconds any one engine call may stay silent: a dependency install step prints nothing
#: for a while.
ENGINE_TIMEOUT_S = 900


def _engine(configured: str) -> Any:
    from modelhost.instances.container import HOW_TO_GET_ONE, engine_urls

    try:
        from docker.client import DockerClient
    except ImportError:
        console.error(
            "building images needs the Docker Engine API client: pip install 'modelhost[container]'"
        )
        raise typer.Exit(1) from None
    urls = engine_urls(configured)
    errors = []
    for url in urls:
        try:
            client = DockerClient(base_url=url, timeout=ENGINE_TIMEOUT_S)
            client.ping()
        except Exception as exc:  # requests' and the SDK's own errors
            errors.append(f"{url}: {exc}")
            continue
        return client
    tried = "; ".join(errors) or "none configured"
    console.error(f"no container engine reachable ({tried}): {HOW_TO_GET_ONE}")
    raise typer.Exit(1)


@images_app.command("build")
def images_build(
    framework: Annotated[
        str, typer.Option(help="Which built-in handlers: sklearn, onnx, python, or all.")
    ] = "all",
    tag: Annotated[
        str,
        typer.Option(help="The image name; {framework} is replaced by the framework's."),
    ] = DEFAULT_TAG,
    source: Annotated[
        Path | None,
        typer.Option(help="The modelhost source tree (default: the one installed from)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            envvar="MODELHOST_CONTAINER_HOST",
            help="The engine's API (unix:// or tcp://); default DOCKER_HOST, else "
            "/run/podman/podman.sock or /var/run/docker.sock.",
        ),
    ] = "",
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the base image and wheels are kept between builds "
            "(default: ~/.cache/modelhost/images)."
        ),
    ] = None,
) -> None:
    """Build the model server image for a framework (or all) with no registry access:
    the base is made from the Debian mirror when missing, the wheels fetched on this host."""
    from modelhost.imagebuild import (
        FRAMEWORKS,
        BuildError,
        build_images,
        default_cache_dir,
        find_source,
    )

    chosen = list(FRAMEWORKS) if framework == "all" else [framework]
    if not set(chosen) <= set(FRAMEWORKS):
        console.error(
            f"--framework must be one of {', '.join(FRAMEWORKS)} or all, not {framework!r}"
        )
        raise typer.Exit(2)
    if len(chosen) > 1 and "{framework}" not in tag:
        console.error("--tag must contain {framework} when building several images")
        raise typer.Exit(2)
    client = _engine(engine or os.environ.get("DOCKER_HOST", ""))
    try:
        report = build_images(
            client,
            chosen,
            tag,
            find_source(source),
            cache_dir or default_cache_dir(),
            progress=lambda line: typer.echo(line, err=True),
        )
    except BuildError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    finally:
        client.close()
    typer.echo(f"base image: {report.base}; {report.interpreter}")
    typer.echo(f"dependency wheels: {'fetched' if report.wheels_fetched else 'cached'}")
    for name, seconds in report.steps.items():
        typer.echo(f"{name}: {seconds:.1f} s")
    for name in report.images:
        typer.echo(f"built {name}")
