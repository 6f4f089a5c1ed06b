"""`modelhost schedules`: transform jobs created on a cron expression."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.cli._shared import DEFAULT_URL, AsJson, EndpointUrl, connected

schedules_app = typer.Typer(
    help="Schedules that create transform jobs on a cron expression.", no_args_is_help=True
)


@schedules_app.command("create")
def schedules_create(
    name: str,
    cron: Annotated[
        str,
        typer.Option(
            help='Cron expression in UTC, e.g. "0 2 * * *"; an optional sixth field is seconds.'
        ),
    ],
    input_prefix: Annotated[
        str,
        typer.Option("--input", help="Input prefix template, e.g. s3://bucket/in/{date:%Y-%m-%d}/"),
    ],
    job_template: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="JSON file: a CreateTransformJob request without TransformJobName.",
        ),
    ],
    endpoint_url: EndpointUrl = DEFAULT_URL,
) -> None:
    """Create a schedule that runs a transform job on the cron expression."""
    import json

    from modelhost.cli import control

    try:
        template = json.loads(job_template.read_text())
    except json.JSONDecodeError as exc:
        console.error(f"{job_template} is not JSON: {exc}")
        raise typer.Exit(2) from None
    with connected(endpoint_url) as api:
        answer = control.call(
            api.url,
            "Modelhost.CreateSchedule",
            {
                "ScheduleName": name,
                "ScheduleExpression": cron,
                "InputPrefixTemplate": input_prefix,
                "TransformJobTemplate": template,
            },
        )
    console.out.print(answer["ScheduleArn"], highlight=False)


@schedules_app.command("list")
def schedules_list(endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List schedules with their next run and last job."""
    from modelhost.cli import control, transform_console

    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"MaxResults": 100}
    with connected(endpoint_url) as api:
        while True:
            page = control.call(api.url, "Modelhost.ListSchedules", params)
            items += page["Schedules"]
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
    if as_json:
        console.print_json({"Schedules": items})
    else:
        console.out.print(transform_console.schedules_table(items))


@schedules_app.command("describe")
def schedules_describe(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Show a schedule: cron, input template, next and last run."""
    from modelhost.cli import control, transform_console

    with connected(endpoint_url) as api:
        item = control.call(api.url, "Modelhost.DescribeSchedule", {"ScheduleName": name})
    if as_json:
        console.print_json(item)
    else:
        transform_console.describe_schedule(item)


@schedules_app.command("delete")
def schedules_delete(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Delete a schedule; the jobs it created stay."""
    from modelhost.cli import control

    with connected(endpoint_url) as api:
        control.call(api.url, "Modelhost.DeleteSchedule", {"ScheduleName": name})
    console.out.print(f"deleted {name}")
