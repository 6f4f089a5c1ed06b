"""Rendering of transform jobs and schedules for the `modelhost` command. Nothing here
talks to the network."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelhost.cli.console import err, key_values, out, status, when

Description = Mapping[str, Any]


def _epoch(value: float | None) -> str:
    return when(datetime.fromtimestamp(value, UTC)) if value else "-"


def progress_text(progress: Mapping[str, int] | None) -> str:
    if not progress:
        return "-"
    return (
        f"{progress['ObjectsCompleted']}/{progress['ObjectsTotal']} objects, "
        f"{progress['RecordsProcessed']:,} records, "
        f"{progress['BytesProcessed'] / 2**20:,.1f} MiB"
    )


def jobs_table(jobs: Sequence[Description]) -> Table:
    table = Table("Name", "Status", "Created", "Ended", "Failure", header_style="bold")
    for job in jobs:
        table.add_row(
            job["TransformJobName"],
            status(job["TransformJobStatus"]),
            when(job.get("CreationTime")),
            when(job.get("TransformEndTime")),
            (job.get("FailureReason") or "")[:80],
        )
    return table


def describe_job(job: Description, progress: Mapping[str, int] | None) -> None:
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    out.print(
        key_values(
            [
                ("Name", job["TransformJobName"]),
                ("Status", status(job["TransformJobStatus"])),
                ("Failure", job.get("FailureReason") or "-"),
                ("Model", job["ModelName"]),
                (
                    "Input",
                    f"{source['S3Uri']} ({source['S3DataType']}, "
                    f"{job['TransformInput'].get('SplitType', 'None')} split, "
                    f"{job['TransformInput'].get('CompressionType', 'None')} compression)",
                ),
                ("Output", job["TransformOutput"]["S3OutputPath"]),
                ("Batch", f"{job.get('BatchStrategy', '-')}, {job.get('MaxPayloadInMB', '-')} MB"),
                (
                    "Instances",
                    f"{job['TransformResources']['InstanceCount']} x "
                    f"{job['TransformResources']['InstanceType']}",
                ),
                ("Progress", progress_text(progress)),
                ("Created", when(job.get("CreationTime"))),
                ("Ended", when(job.get("TransformEndTime"))),
            ]
        )
    )


@contextmanager
def job_progress(name: str) -> Iterator[Callable[[str, Mapping[str, int] | None], None]]:
    """A progress bar over the job's objects (records and bytes alongside), on stderr."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} objects"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(name, total=None, detail="")

        def report(state: str, progress: Mapping[str, int] | None) -> None:
            detail = state
            if progress:
                detail = (
                    f"{state}  {progress['RecordsProcessed']:,} records  "
                    f"{progress['BytesProcessed'] / 2**20:,.1f} MiB"
                )
                bar.update(
                    task, total=progress["ObjectsTotal"], completed=progress["ObjectsCompleted"]
                )
            bar.update(task, detail=detail)

        yield report


def schedules_table(schedules: Sequence[Description]) -> Table:
    table = Table("Name", "Cron", "Input", "Next run", "Last job", header_style="bold")
    for item in schedules:
        table.add_row(
            item["ScheduleName"],
            item["ScheduleExpression"],
            item["InputPrefixTemplate"],
            _epoch(item.get("NextRunTime")),
            item.get("LastTransformJobName") or "-",
        )
    return table


def describe_schedule(item: Description) -> None:
    out.print(
        key_values(
            [
                ("Name", item["ScheduleName"]),
                ("Cron", item["ScheduleExpression"]),
                ("Input", item["InputPrefixTemplate"]),
                ("Model", item["TransformJobTemplate"].get("ModelName", "-")),
                (
                    "Output",
                    item["TransformJobTemplate"]
                    .get("TransformOutput", {})
                    .get("S3OutputPath", "-"),
                ),
                ("Next run", _epoch(item.get("NextRunTime"))),
                ("Last run", _epoch(item.get("LastRunTime"))),
                ("Last job", item.get("LastTransformJobName") or "-"),
                ("Last error", item.get("LastError") or "-"),
            ]
        )
    )
