"""modelhost's own transform schedules (CreateSchedule): a cron expression, a
CreateTransformJob request without its name and an input prefix template. Not to be
confused with Application Auto Scaling's scheduled actions (`scaling_schedules`).

The API checks a schedule with these functions and the transform schedule controller fires
it with them, so the job a schedule creates is the job its create call was checked with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from croniter import croniter

_STAMP = "%Y%m%d%H%M%S"


def render_input(template: str, when: datetime) -> str:
    return template.format(date=when)


def job_name(schedule: str, when: datetime) -> str:
    """`<schedule>-<UTC yyyymmddHHMMSS>`: runs are keyed by their due time."""
    return f"{schedule}-{when.astimezone(UTC).strftime(_STAMP)}"


def job_request(record: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The CreateTransformJob request a schedule makes for the run due at `when`."""
    request = {
        **record["TransformJobTemplate"],
        "TransformJobName": job_name(record["ScheduleName"], when),
    }
    transform_input = {**request.get("TransformInput", {})}
    data_source = {**transform_input.get("DataSource", {})}
    s3 = {
        "S3DataType": "S3Prefix",
        **data_source.get("S3DataSource", {}),
        "S3Uri": render_input(record["InputPrefixTemplate"], when),
    }
    request["TransformInput"] = {
        **transform_input,
        "DataSource": {**data_source, "S3DataSource": s3},
    }
    return request


def next_run(expression: str, after: datetime) -> datetime:
    return croniter(expression, after).get_next(datetime)
