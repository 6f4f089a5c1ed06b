"""Scheduled batch runs: modelhost's own CreateSchedule / DescribeSchedule /
ListSchedules / DeleteSchedule (target prefix `Modelhost.`, same JSON 1.1 protocol).

SageMaker itself leaves this to EventBridge; here a schedule holds a cron expression, a
CreateTransformJob request (without its name) and an input prefix template such as
`s3://bucket/in/{date:%Y-%m-%d}/`. The transform schedule
controller creates `<schedule>-<UTC
yyyymmddHHMMSS>` jobs from it. Their requests are checked against modelhost's service
model (data/modelhost/*/service-2.json) like any SageMaker request; the job template is
checked exactly as CreateTransformJob checks a request, at create time, so a schedule
never fires a job that cannot be created.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from modelhost.api.context import Context
from modelhost.api.listing import paginate
from modelhost.api.resources import create, public, require
from modelhost.api.service_models import operation_model
from modelhost.api.transform_jobs import check_request
from modelhost.api.validation import validate_request
from modelhost.domain import kinds
from modelhost.domain.transform_schedules import job_request, next_run, render_input
from modelhost.errors import ValidationError

KIND = kinds.TRANSFORM_SCHEDULE
LABEL = "schedule"


def _check_template(template: str) -> None:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        if fields - {"date"}:
            raise ValueError(f"unknown placeholder {sorted(fields - {'date'})[0]!r}")
        render_input(template, datetime.now(UTC))
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ValidationError(f"InputPrefixTemplate: {exc} (use {{date:%Y-%m-%d}})") from None
    if not template.startswith("s3://"):
        raise ValidationError("InputPrefixTemplate must be an s3:// URI.")


def create_schedule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ScheduleName"]
    expression = params["ScheduleExpression"]
    if not croniter.is_valid(expression):
        raise ValidationError(
            f"ScheduleExpression {expression[:64]!r} is not a cron "
            "expression (minute hour day month weekday [second])."
        )
    template = params["InputPrefixTemplate"]
    _check_template(template)
    job = params["TransformJobTemplate"]
    if not isinstance(job, dict) or "TransformJobName" in job:
        raise ValidationError(
            "TransformJobTemplate must be a CreateTransformJob request without TransformJobName."
        )
    now = datetime.now(UTC)
    record: dict[str, Any] = {
        "ScheduleName": name,
        "ScheduleExpression": expression,
        "InputPrefixTemplate": template,
        "TransformJobTemplate": job,
    }
    sample = job_request(record, now)
    try:
        validate_request(sample, operation_model("SageMaker.CreateTransformJob").input_shape)
    except ValidationError as exc:
        raise ValidationError(f"TransformJobTemplate: {exc.message}") from None
    require(ctx, "model", "model", sample["ModelName"])
    check_request(sample)
    arn = ctx.arn("schedule", name)
    upcoming = next_run(expression, now)
    record.update(
        {
            "ScheduleArn": arn,
            "State": "Enabled",
            "CreationTime": ctx.now(),
            "NextRunTime": round(upcoming.timestamp(), 3),
            "_arn": arn,
        }
    )
    create(ctx, KIND, LABEL, name, record, None)
    ctx.notify()
    return {"ScheduleArn": arn}


def describe_schedule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return public(require(ctx, KIND, LABEL, params["ScheduleName"]))


def list_schedules(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    return paginate(
        ctx.store.list(KIND),
        params,
        name_key="ScheduleName",
        sort_keys={"Name": "ScheduleName", "CreationTime": "CreationTime"},
        summarize=public,
        result_key="Schedules",
    )


def delete_schedule(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Jobs the schedule already created stay, as they would in SageMaker."""
    name = params["ScheduleName"]
    require(ctx, KIND, LABEL, name)
    ctx.store.delete(KIND, name)
    return {}
