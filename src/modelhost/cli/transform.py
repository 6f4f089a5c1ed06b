"""`modelhost transform-jobs`: follow and stop batch transform jobs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.cli._shared import (
    DEFAULT_URL,
    Api,
    AsJson,
    EndpointUrl,
    NameContains,
    connected,
    name_filter,
    print_listing,
    wait_failed,
)

transform_app = typer.Typer(help="Batch transform jobs.", no_args_is_help=True)
_JOB_ENDED = {"Completed", "Failed", "Stopped"}


def _describe_job(api: Api, name: str) -> tuple[dict[str, Any], dict[str, int] | None]:
    """DescribeTransformJob through boto3, plus the TransformProgress member botocore's
    model does not know (read from the raw answer)."""
    import json

    raw: dict[str, Any] = {}

    def keep(http_response: Any, **_: Any) -> None:
        raw.update(json.loads(http_response.content))

    events = api.sagemaker.meta.events
    event = "after-call.sagemaker.DescribeTransformJob"
    events.register(event, keep)
    try:
        job = api.sagemaker.describe_transform_job(TransformJobName=name)
    finally:
        events.unregister(event, keep)
    return job, raw.get("TransformProgress")


@transform_app.command("list")
def transform_list(
    endpoint_url: EndpointUrl = DEFAULT_URL,
    name_contains: NameContains = None,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. Failed.")] = None,
    as_json: AsJson = False,
) -> None:
    """List transform jobs, newest first."""
    from modelhost.cli import transform_console

    params = name_filter(name_contains) | ({"StatusEquals": status} if status else {})
    print_listing(
        endpoint_url,
        "list_transform_jobs",
        "TransformJobSummaries",
        transform_console.jobs_table,
        as_json,
        **params,
    )


@transform_app.command("describe")
def transform_describe(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Show a transform job: input, output, status and progress."""
    from modelhost.cli import transform_console

    with connected(endpoint_url) as api:
        job, progress = _describe_job(api, name)
    if as_json:
        console.print_json({**job, "TransformProgress": progress})
    else:
        transform_console.describe_job(job, progress)


@transform_app.command("wait")
def transform_wait(
    name: str,
    endpoint_url: EndpointUrl = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 86400,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
) -> None:
    """Follow a job with a progress bar until it ends; exit 1 unless it Completed."""
    from modelhost.cli import transform_console

    started = time.monotonic()
    with connected(endpoint_url) as api, transform_console.job_progress(name) as report:
        while True:
            job, progress = _describe_job(api, name)
            state = job["TransformJobStatus"]
            report(state, progress)
            if state in _JOB_ENDED or time.monotonic() - started > timeout:
                break
            time.sleep(interval)
    if state != "Completed":
        raise wait_failed(name, state, job, _JOB_ENDED, timeout)
    console.out.print(
        f"{name} [green]Completed[/]: {transform_console.progress_text(progress)}", highlight=False
    )


@transform_app.command("stop")
def transform_stop(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Stop a job in progress (its instances stop; finished objects' outputs stay)."""
    with connected(endpoint_url) as api:
        api.sagemaker.stop_transform_job(TransformJobName=name)
    console.out.print(f"stopping {name}")
