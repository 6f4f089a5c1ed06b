"""Schedules and the transform-job commands, run as users run them: the `modelhost`
command against the session server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from modelhost.cli import control
from tests.support.cli import run_cli
from tests.support.endpoints import unique
from tests.support.models import iris_rows


@pytest.fixture(scope="module")
def iris_model(sagemaker, iris_model_url: str) -> str:
    name = unique("iris-sched")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": iris_model_url},
    )
    return name


def _template(model: str, output: str) -> dict:
    return {
        "ModelName": model,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://placeholder/"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def test_schedule_creates_dated_jobs_from_the_cli(server, sagemaker, iris_model, tmp_path) -> None:
    base = unique("s3://sched/in")
    # today's and tomorrow's folders: a run may fall either side of midnight UTC
    for day in (datetime.now(UTC), datetime.fromtimestamp(time.time() + 86400, UTC)):
        folder = server.data_dir / "objects" / base.removeprefix("s3://") / (f"{day:%Y-%m-%d}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rows.csv").write_text(
            "".join(",".join(map(str, r)) + "\n" for r in iris_rows(3))
        )
    output = unique("s3://sched/out")
    template = tmp_path / "job.json"
    template.write_text(json.dumps(_template(iris_model, output)))
    name = unique("nightly")
    env = {"MODELHOST_URL": server.url}
    created = run_cli(
        "schedules",
        "create",
        name,
        "--cron",
        "* * * * * */2",
        "--input",
        base + "/{date:%Y-%m-%d}/",
        "--job-template",
        str(template),
        env=env,
    )
    assert created.returncode == 0, created.stderr
    try:
        deadline = time.monotonic() + 60
        while True:
            jobs = sagemaker.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
            if jobs:
                break
            assert time.monotonic() < deadline, "the schedule created no job"
            time.sleep(0.2)
        job = jobs[-1]["TransformJobName"]
        assert job.startswith(f"{name}-") and len(job) == len(name) + 15
        waited = run_cli("transform-jobs", "wait", job, env=env)
        assert waited.returncode == 0, waited.stderr
        assert "3 records" in waited.stdout
        described = run_cli("transform-jobs", "describe", job, env=env)
        assert "1/1 objects" in described.stdout and "Completed" in described.stdout
        listed = run_cli("schedules", "list", env=env)
        assert name in listed.stdout
        shown = json.loads(run_cli("schedules", "describe", name, "--json", env=env).stdout)
        assert shown["LastTransformJobName"].startswith(f"{name}-")
        assert shown["NextRunTime"] > shown["LastRunTime"]
        day = job[len(name) + 1 : len(name) + 9]
        out = server.data_dir / "objects" / output.removeprefix("s3://")
        assert (out / "rows.csv.out").read_text().count("\n") == 3
        assert (
            f"{day[:4]}-{day[4:6]}-{day[6:]}"
            in sagemaker.describe_transform_job(TransformJobName=job)["TransformInput"][
                "DataSource"
            ]["S3DataSource"]["S3Uri"]
        )
    finally:
        deleted = run_cli("schedules", "delete", name, env=env)
    assert deleted.returncode == 0, deleted.stderr
    missing = run_cli("schedules", "describe", name, env=env)
    assert missing.returncode == 1 and "ValidationException" in missing.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ScheduleExpression": "every day"}, "cron"),
        ({"InputPrefixTemplate": "s3://b/{day}/"}, "placeholder"),
        ({"InputPrefixTemplate": "s3://b/{date:%Y-%m-%d/"}, "InputPrefixTemplate"),
        ({"ScheduleName": "x" * 49}, "at 'scheduleName' failed to satisfy constraint"),
        ({"TransformJobTemplate": {"ModelName": "m"}}, "TransformJobTemplate"),
    ],
)
def test_bad_schedules_are_validation_errors(server, iris_model, changes, message) -> None:
    params = {
        "ScheduleName": unique("bad"),
        "ScheduleExpression": "0 2 * * *",
        "InputPrefixTemplate": "s3://b/in/{date:%Y-%m-%d}/",
        "TransformJobTemplate": _template(iris_model, "s3://b/out/"),
        **changes,
    }
    with pytest.raises(ClientError) as caught:
        control.call(server.url, "Modelhost.CreateSchedule", params)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]


def test_transform_list_and_unknown_job(server) -> None:
    env = {"MODELHOST_URL": server.url}
    assert run_cli("transform-jobs", "list", env=env).returncode == 0
    missing = run_cli("transform-jobs", "describe", "no-such-job", env=env)
    assert missing.returncode == 1 and "ValidationException" in missing.stderr
