"""The `modelhost` command: `server` runs one; every other command talks to a running
server through boto3, one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from modelhost.cli.deploy import deploy
from modelhost.cli.endpoints import endpoints_app
from modelhost.cli.images import images_app
from modelhost.cli.load import load
from modelhost.cli.models import configs_app, models_app
from modelhost.cli.recommend import recommend_app
from modelhost.cli.server import server
from modelhost.cli.state import state_app
from modelhost.cli.transform import transform_app
from modelhost.cli.transform_schedules import schedules_app

app = typer.Typer(
    help="Self-hosted model deployment that speaks the SageMaker API.", no_args_is_help=True
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"modelhost {version('modelhost')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Self-hosted model deployment that speaks the SageMaker API."""


app.command()(server)
app.command()(deploy)
app.add_typer(models_app, name="models")
app.add_typer(configs_app, name="endpoint-configs")
app.add_typer(endpoints_app, name="endpoints")
app.command("load")(load)
app.add_typer(transform_app, name="transform-jobs")
app.add_typer(schedules_app, name="schedules")
app.add_typer(recommend_app, name="recommend")
app.add_typer(state_app, name="state")
app.add_typer(images_app, name="images")

__all__ = ["app"]
