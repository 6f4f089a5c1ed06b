"""`modelhost recommend`: inference recommendation jobs, their candidates and charts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.cli._shared import DEFAULT_URL, AsJson, EndpointUrl, connected, print_listing

recommend_app = typer.Typer(
    help="Inference recommendations: load test candidate instance types, get cost and latency.",
    no_args_is_help=True,
)

ChartPath = Annotated[
    Path | None,
    typer.Option(
        "--chart", help="Write a latency-vs-throughput PNG here (needs modelhost\\[plot])."
    ),
]


@recommend_app.command("run")
def recommend_run(
    model: Annotated[str, typer.Argument(help="The model to load test.")],
    payload: Annotated[
        str,
        typer.Option(help="SamplePayloadUrl: a tar.gz of payload files, a prefix, or one object."),
    ],
    endpoint_url: EndpointUrl = DEFAULT_URL,
    instance_type: Annotated[
        list[str] | None,
        typer.Option(help="A candidate instance type; repeat for more. Default: a few CPU types."),
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            help="USERS:SECONDS or START-END:SECONDS (users ramp); repeat for more phases. "
            "Default: 1, 2, 3, 4 users for 10 s each."
        ),
    ] = None,
    latency: Annotated[
        str | None, typer.Option(help="Latency bound PERCENTILE:MS, e.g. P95:100.")
    ] = None,
    max_invocations: Annotated[
        int | None,
        typer.Option(help="Stop raising the load past this many invocations per minute."),
    ] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of the payloads.")] = "text/csv",
    name: Annotated[str | None, typer.Option(help="Job name (default: generated).")] = None,
    chart: ChartPath = None,
) -> None:
    """Create a recommendation job, wait for it, show the candidates (cheapest that meets
    the bound first) and optionally a chart."""
    import uuid

    job_name = name or f"{model[:40]}-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "ModelName": model,
        "ContainerConfig": {
            "PayloadConfig": {"SamplePayloadUrl": payload, "SupportedContentTypes": [content_type]}
        },
    }
    if instance_type:
        config["EndpointConfigurations"] = [{"InstanceType": t} for t in instance_type]
    try:
        if phase:
            config["TrafficPattern"] = {
                "TrafficType": "PHASES",
                "Phases": [_traffic_phase(p) for p in phase],
            }
        stopping: dict[str, Any] = {}
        if latency:
            percentile, _, millis = latency.partition(":")
            stopping["ModelLatencyThresholds"] = [
                {"Percentile": percentile.upper(), "ValueInMilliseconds": int(millis)}
            ]
    except ValueError as exc:
        console.error(
            str(exc) if "phase" in str(exc) else f"bad --latency {latency!r}: expected e.g. P95:100"
        )
        raise typer.Exit(2) from None
    if max_invocations:
        stopping["MaxInvocations"] = max_invocations
    with connected(endpoint_url) as api:
        api.sagemaker.create_inference_recommendations_job(
            JobName=job_name,
            JobType="Advanced" if (phase or stopping) else "Default",
            RoleArn="arn:aws:iam::000000000000:role/modelhost",
            InputConfig=config,
            **({"StoppingConditions": stopping} if stopping else {}),
        )
        with console.waiting(job_name) as report:
            while True:
                job = api.sagemaker.describe_inference_recommendations_job(JobName=job_name)
                report(job["Status"])
                if job["Status"] in ("COMPLETED", "FAILED", "STOPPED"):
                    break
                time.sleep(1)
    _show_recommendation(endpoint_url, job_name, chart, as_json=False)


@recommend_app.command("show")
def recommend_show(
    job: str,
    endpoint_url: EndpointUrl = DEFAULT_URL,
    chart: ChartPath = None,
    as_json: AsJson = False,
) -> None:
    """Show a recommendation job's candidates and, with --chart, draw them."""
    _show_recommendation(endpoint_url, job, chart, as_json)


@recommend_app.command("list")
def recommend_list(endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List recommendation jobs, newest first."""
    print_listing(
        endpoint_url,
        "list_inference_recommendations_jobs",
        "InferenceRecommendationsJobs",
        console.recommendation_jobs_table,
        as_json,
    )


@recommend_app.command("stop")
def recommend_stop(job: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Stop a job; its temporary endpoints are deleted."""
    with connected(endpoint_url) as api:
        api.sagemaker.stop_inference_recommendations_job(JobName=job)
    console.out.print(f"stopping {job}")


def _traffic_phase(text: str) -> dict[str, int]:
    """USERS:SECONDS or START-END:SECONDS as a SageMaker Phase (SpawnRate: users/minute)."""
    try:
        users, seconds = text.split(":")
        start, _, end = users.partition("-")
        duration = int(seconds)
        spawn = round((int(end) - int(start)) * 60 / duration) if end else 0
        return {
            "InitialNumberOfUsers": int(start),
            "SpawnRate": spawn,
            "DurationInSeconds": duration,
        }
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"bad --phase {text!r}: expected USERS:SECONDS or START-END:SECONDS"
        ) from None


def _show_recommendation(url: str, name: str, chart: Path | None, as_json: bool) -> None:
    with connected(url) as api:
        job = api.sagemaker.describe_inference_recommendations_job(JobName=name)
        steps = api.collect("list_inference_recommendations_job_steps", "Steps", JobName=name)
    if as_json:
        console.print_json({"Job": job, "Steps": steps})
    else:
        console.describe_recommendation_job(job, steps)
    if chart is None:
        return
    from modelhost.cli import control
    from modelhost.cli.recommendation_chart import write_chart
    from modelhost.domain.recommendations import candidate_label

    with connected(url) as api:
        curves = control.get(api.url, f"/inference-recommendations-jobs/{name}/load-curves")

    best = job.get("InferenceRecommendations", [{}])[0].get("EndpointConfiguration")
    try:
        write_chart(curves, candidate_label(best) if best else None, chart)
    except ImportError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    console.err.print(f"chart written to {chart}")
