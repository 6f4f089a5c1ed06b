"""Rendering for the `modelhost` command: rich tables for people, plain JSON for scripts.

Kept apart from the command modules beside it so they read as "ask the server, hand the
answer here"; nothing in this module talks to the network.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from modelhost.domain.recommendations import candidate_label

out = Console()
# Errors and progress go to stderr so stdout stays clean for `--json` and invoke bodies.
err = Console(stderr=True)

STATUS_STYLES = {
    "InService": "green",
    "Creating": "yellow",
    "Updating": "yellow",
    "SystemUpdating": "yellow",
    "RollingBack": "yellow",
    "Deleting": "magenta",
    "OutOfService": "red",
    "UpdateRollbackFailed": "red",
    "Failed": "bold red",
    "InProgress": "yellow",
    "Stopping": "magenta",
    "Completed": "green",
    "Stopped": "magenta",
    # recommendation jobs and their steps
    "COMPLETED": "green",
    "PENDING": "yellow",
    "IN_PROGRESS": "yellow",
    "STOPPING": "magenta",
    "STOPPED": "magenta",
    "FAILED": "bold red",
}

Description = Mapping[str, Any]


def when(value: datetime | None) -> str:
    """Local time, to the second: people compare these with their own clock, not UTC."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def status(value: str | None) -> Text:
    return Text(value or "-", style=STATUS_STYLES.get(value or "", ""))


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data: object) -> None:
    """Plain `json.dumps`, not rich: scripts pipe this into `jq` and must not see colour."""
    if isinstance(data, Mapping):
        data = {k: v for k, v in data.items() if k != "ResponseMetadata"}
    sys.stdout.write(json.dumps(data, default=_iso, indent=2) + "\n")


def error(message: str) -> None:
    """One red line on stderr, never wrapped, so `grep` on the message keeps working."""
    err.print(Text("error: ", style="bold red") + Text(message, style="red"), soft_wrap=True)


@contextmanager
def waiting(name: str) -> Iterator[Callable[[str], None]]:
    """Yields `report(status)`. On a terminal: a spinner with the status and elapsed time,
    erased when done. Elsewhere (CI logs, pipes): one line per status change, because a
    spinner there is either invisible or a wall of carriage returns."""
    if not err.is_terminal:
        seen: list[str] = []

        def report_line(state: str) -> None:
            if not seen or seen[-1] != state:
                seen.append(state)
                err.print(f"{name}: {state}", highlight=False, soft_wrap=True)

        yield report_line
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(name)

        def report_spinner(state: str) -> None:
            progress.update(task, description=Text.assemble(f"{name}: ", status(state)).markup)

        yield report_spinner


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(*columns, title=title, title_justify="left", header_style="bold")
    return table


def key_values(rows: Iterable[tuple[str, object]]) -> Table:
    """A describe: one row per field, skipping the ones the server left out."""
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        if value is None or value == "":
            continue
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def _serverless(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    return (
        f"serverless {config.get('MemorySizeInMB', '?')} MB, "
        f"max concurrency {config.get('MaxConcurrency', '?')}"
    )


def _weight(current: object, desired: object) -> str:
    if current is None or current == desired:
        return "-" if desired is None else str(desired)
    return f"{current} → {desired}"


# --- lists -------------------------------------------------------------------------------


def models_table(models: Sequence[Description]) -> Table:
    table = _table("Name", "Created")
    for model in models:
        table.add_row(model["ModelName"], when(model.get("CreationTime")))
    return table


def endpoint_configs_table(configs: Sequence[Description]) -> Table:
    table = _table("Name", "Created")
    for config in configs:
        table.add_row(config["EndpointConfigName"], when(config.get("CreationTime")))
    return table


def endpoints_table(
    endpoints: Sequence[Description], counts: Mapping[str, tuple[int, int] | None]
) -> Table:
    """`counts` maps name -> (current, desired) instances summed over variants; ListEndpoints
    does not carry them, so the caller describes each endpoint."""
    table = _table("Name", "Status", "Instances", "Created")
    for endpoint in endpoints:
        name = endpoint["EndpointName"]
        count = counts.get(name)
        instances = "-" if count is None else f"{count[0]}/{count[1]}"
        table.add_row(
            name,
            status(endpoint.get("EndpointStatus")),
            instances,
            when(endpoint.get("CreationTime")),
        )
    return table


# --- describes ---------------------------------------------------------------------------


def async_requests_table(answer: Description) -> Table:
    """An endpoint's asynchronous requests, with the counts per state in the title."""
    counts = "  ".join(f"{state}: {count}" for state, count in answer["Counts"].items())
    table = _table(
        "InferenceId",
        "State",
        "Attempts",
        "Received",
        "Input",
        "Error",
        title=f"{answer['EndpointName']} — {counts}",
    )
    for job in answer["Requests"]:
        table.add_row(
            job["inference_id"],
            status(job["state"]),
            str(job["attempts"]),
            when(datetime.fromtimestamp(job["created"])),
            job["input_location"],
            job.get("error") or "",
        )
    return table


def describe_model(model: Description) -> None:
    out.print(
        key_values(
            [
                ("Name", model.get("ModelName")),
                ("ARN", model.get("ModelArn")),
                ("Created", when(model.get("CreationTime"))),
                ("Execution role", model.get("ExecutionRoleArn")),
                ("Network isolation", model.get("EnableNetworkIsolation")),
            ]
        )
    )
    containers = (
        [model["PrimaryContainer"]]
        if model.get("PrimaryContainer")
        else list(model.get("Containers") or [])
    )
    table = _table("Image", "Model data", "Environment", title="Containers")
    for container in containers:
        environment = "\n".join(f"{k}={v}" for k, v in (container.get("Environment") or {}).items())
        table.add_row(
            container.get("Image", "-"), container.get("ModelDataUrl", "-"), environment or "-"
        )
    out.print(table)


def describe_endpoint_config(config: Description) -> None:
    out.print(
        key_values(
            [
                ("Name", config.get("EndpointConfigName")),
                ("ARN", config.get("EndpointConfigArn")),
                ("Created", when(config.get("CreationTime"))),
                (
                    "Async output",
                    (config.get("AsyncInferenceConfig") or {})
                    .get("OutputConfig", {})
                    .get("S3OutputPath"),
                ),
            ]
        )
    )
    table = _table(
        "Variant", "Model", "Instance type", "Initial count", "Weight", title="Production variants"
    )
    for variant in config.get("ProductionVariants") or []:
        table.add_row(
            variant.get("VariantName", "-"),
            variant.get("ModelName", "-"),
            variant.get("InstanceType") or _serverless(variant.get("ServerlessConfig")) or "-",
            str(variant.get("InitialInstanceCount", "-")),
            str(variant.get("InitialVariantWeight", "-")),
        )
    out.print(table)


def describe_endpoint(endpoint: Description, config: Description | None) -> None:
    """`config` supplies the instance types, which DescribeEndpoint does not report; it is
    None when the config was deleted after the endpoint was created."""
    out.print(
        key_values(
            [
                ("Name", endpoint.get("EndpointName")),
                ("ARN", endpoint.get("EndpointArn")),
                ("Status", status(endpoint.get("EndpointStatus"))),
                (
                    "Failure reason",
                    Text(endpoint["FailureReason"], style="red")
                    if endpoint.get("FailureReason")
                    else None,
                ),
                ("Endpoint config", endpoint.get("EndpointConfigName")),
                ("Created", when(endpoint.get("CreationTime"))),
                ("Last modified", when(endpoint.get("LastModifiedTime"))),
            ]
        )
    )
    types = {
        v.get("VariantName"): v.get("InstanceType") or _serverless(v.get("ServerlessConfig"))
        for v in (config or {}).get("ProductionVariants") or []
    }
    variants = endpoint.get("ProductionVariants") or []
    # What a variant's instances wait for (an image pull), while there is something.
    waiting = any(v.get("VariantStatus") for v in variants)
    columns = ["Variant", "Instance type", "Current", "Desired", "Weight"]
    table = _table(*columns, *(["Status"] if waiting else []), title="Production variants")
    for variant in variants:
        name = variant.get("VariantName", "-")
        row = [
            name,
            _serverless(variant.get("CurrentServerlessConfig")) or types.get(name) or "-",
            str(variant.get("CurrentInstanceCount", "-")),
            str(variant.get("DesiredInstanceCount", "-")),
            _weight(variant.get("CurrentWeight"), variant.get("DesiredWeight")),
        ]
        if waiting:
            row.append(
                "; ".join(
                    f"{s.get('Status')}: {s.get('StatusMessage', '')}"
                    for s in variant.get("VariantStatus") or []
                )
            )
        table.add_row(*row)
    out.print(table)


def load_report(result: Any, timeline: bool) -> None:
    """A load test's headline figures, its errors by code and, when asked, its per-second
    timeline."""
    s = result.summary()
    table = Table(title=f"{s['mode']}-loop load, {s['duration_s']:.1f}s")
    for column in (
        "sent",
        "ok",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(s["sent"]),
        str(s["completed"]),
        str(s["errors"]),
        f"{s['throughput_rps']:.1f}",
        *(f"{s[k]:.2f}" for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")),
    )
    out.print(table)
    if s["errors_by_code"]:
        out.print(
            "errors: "
            + ", ".join(f"{code}: {n}" for code, n in sorted(s["errors_by_code"].items()))
        )
    if not timeline:
        return
    seconds = Table(title="per second")
    for column in ("s", "scheduled", "sent", "ok", "errors", "p50 ms", "p99 ms"):
        seconds.add_column(column, justify="right")
    for second in result.timeline:
        seconds.add_row(
            str(second.second),
            str(second.scheduled),
            str(second.sent),
            str(second.completed),
            str(second.errors),
            f"{second.p50_ms:.2f}",
            f"{second.p99_ms:.2f}",
        )
    out.print(seconds)


def recommendation_jobs_table(jobs: Sequence[Description]) -> Table:
    table = _table("name", "type", "model", "status", "created")
    for job in jobs:
        table.add_row(
            job["JobName"],
            job["JobType"],
            job.get("ModelName", "-"),
            status(job["Status"]),
            when(job.get("CreationTime")),
        )
    return table


def describe_recommendation_job(job: Description, steps: Sequence[Description]) -> None:
    """One row per candidate; the recommended one (cheapest per inference among those that
    met the job's conditions) is starred."""
    out.print(Text.assemble(f"{job['JobName']} ({job['JobType']}): ", status(job["Status"])))
    if job.get("FailureReason"):
        out.print(f"[red]{job['FailureReason']}[/]", highlight=False)
    recommended = job.get("InferenceRecommendations") or []
    best = candidate_label(recommended[0]["EndpointConfiguration"]) if recommended else None
    table = _table(
        "",
        "candidate",
        "status",
        "$/hour",
        "max invocations/min",
        "model latency ms",
        "$ per 1M inferences",
        "CPU %",
        "memory %",
        "setup s",
        "note",
    )
    for step in steps:
        benchmark = step.get("InferenceBenchmark", {})
        label = candidate_label(benchmark.get("EndpointConfiguration", {}))
        metrics = benchmark.get("Metrics", {})

        def cell(key: str, fmt: str = "{}", metrics: Mapping[str, Any] = metrics) -> str:
            return fmt.format(metrics[key]) if key in metrics else "-"

        table.add_row(
            "★" if label == best else "",
            label,
            status(step["Status"]),
            cell("CostPerHour", "{:.3f}"),
            cell("MaxInvocations", "{:,}"),
            cell("ModelLatency"),
            f"{metrics['CostPerInference'] * 1e6:.4f}" if "CostPerInference" in metrics else "-",
            cell("CpuUtilization", "{:.0f}"),
            cell("MemoryUtilization", "{:.1f}"),
            cell("ModelSetupTime"),
            benchmark.get("FailureReason", ""),
        )
    out.print(table)
