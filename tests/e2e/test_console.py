"""The web console end to end: a real server, endpoints and transform jobs made with boto3,
and the console's pages in a real headless chromium (Debian's, driven by Playwright),
checked against what boto3 reads from the same server. Every page is checked for console
errors and uncaught exceptions; screenshots go to the test's tmp folder."""

from __future__ import annotations

import datetime
import http.client
import json
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelhost.cli import control
from tests.support.async_inference import deploy_async, wait_for_object
from tests.support.autoscaling import (
    FAST_AUTOSCALING,
    counts,
    register,
    resource_id,
    schedule_range,
)
from tests.support.cloudwatch import recent, variant
from tests.support.endpoints import (
    deploy,
    deploy_serverless,
    held_invocations,
    unique,
    wait_for,
)
from tests.support.models import iris_rows, model_tarball, put_gated_model, put_iris_model
from tests.support.processes import wait_until
from tests.support.server import ServerProcess, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test installs it)"
)
N = 23
KEY, SECRET = "consolekey", "console-secret-value"
GUESSED = "guessedkey"  # the key whose secret one test guesses at
UTC = datetime.UTC


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("console") / "data",
        env={"MODELHOST_METRICS_FLUSH_INTERVAL": "1", **FAST_AUTOSCALING},
    ) as process:
        put_iris_model(process.data_dir)
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: chromium's sandbox cannot run as root, which CI is.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


class Page:
    """A browser tab at 1280x800 that records console errors and page exceptions."""

    def __init__(self, browser: Any, base: str, folder: Path) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.tab = self.context.new_page()
        self.base = base
        self.folder = folder
        self.errors: list[str] = []
        self.tab.on(
            "console",
            lambda m: (
                self.errors.append(f"console.{m.type}: {m.text} ({m.location.get('url')})")
                if m.type == "error"
                else None
            ),
        )
        self.tab.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, path: str) -> Any:
        return self.tab.goto(self.base + path)

    def refreshes(self) -> int:
        return int(self.tab.evaluate("Number(document.body.dataset.refreshed || 0)"))

    def wait_for_text(self, selector: str, wanted: str, timeout_s: float = 60) -> None:
        """Until the element shows `wanted` (the page polls; the text follows the data)."""
        wait_until(
            lambda: self.tab.locator(selector).first.text_content(timeout=1000) == wanted,
            timeout_s=timeout_s,
            what=f"{selector} to show {wanted!r}",
        )

    def wait_for_data(self, chart: str, attribute: str = "data-points") -> None:
        """Until the chart says (in `attribute`) it has at least one point to draw."""
        element = self.tab.locator(f'[data-chart="{chart}"]')
        wait_until(
            lambda: int(element.get_attribute(attribute) or 0) >= 1,
            timeout_s=30,
            what=f"{chart} chart's {attribute}",
        )

    def screenshot(self, name: str) -> None:
        self.tab.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)


@pytest.fixture
def page(browser: Any, console_server: ServerProcess, tmp_path: Path) -> Iterator[Page]:
    tab = Page(browser, console_server.url, tmp_path)
    yield tab
    tab.context.close()
    assert tab.errors == []


def _invocations(cw: Any, endpoint: str) -> float:
    points = recent(cw, "AWS/SageMaker", "Invocations", variant(endpoint), 60, ["Sum"])
    return sum(p["Sum"] for p in points)


@pytest.fixture(scope="module")
def loaded_endpoint(console_server: ServerProcess) -> Iterator[str]:
    """An endpoint that answered exactly N invocations, all of them in its history."""
    sagemaker = console_server.client("sagemaker")
    runtime = console_server.client("sagemaker-runtime")
    cw = console_server.client("cloudwatch")
    name = deploy(sagemaker, "s3://models/iris/model.tar.gz")
    for _ in range(N):
        runtime.invoke_endpoint(
            EndpointName=name, Body=json.dumps(iris_rows(2)), ContentType="application/json"
        )
    wait_until(lambda: _invocations(cw, name) == N, timeout_s=60, what="N invocations recorded")
    yield name
    sagemaker.delete_endpoint(EndpointName=name)


def _drawn_pixels(tab: Any, chart: str, colour: tuple[int, int, int] = (0x24, 0x59, 0xC7)) -> int:
    """Pixels of the chart's canvas in `colour`, by default its first series' (#2459c7):
    the line and points uPlot drew for the data, not its axes or grid (grey)."""
    return int(
        tab.evaluate(
            """([key, [r, g, b]]) => {
                const canvas = document.querySelector(`[data-chart="${key}"] canvas`);
                const data = canvas.getContext("2d")
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 0; i < data.length; i += 4) {
                    const near = Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40
                        && Math.abs(data[i + 2] - b) < 40 && data[i + 3] > 128;
                    if (near) n++;
                }
                return n;
            }""",
            [chart, list(colour)],
        )
    )


def test_endpoint_page_charts_the_invocations_the_api_counts(
    page: Page, console_server: ServerProcess, loaded_endpoint: str
) -> None:
    name = loaded_endpoint
    counted = _invocations(console_server.client("cloudwatch"), name)
    assert counted == N
    page.open(f"/console/#/endpoint/{name}?window=1h")
    page.wait_for_text("#invocation-total", str(N))
    assert page.tab.locator("#endpoint-status").text_content() == "InService"
    chart = page.tab.locator('[data-chart="invocations"]')
    assert int(chart.get_attribute("data-points") or 0) >= 1
    assert _drawn_pixels(page.tab, "invocations") > 0
    # The instance count is recorded each flush: its chart has points too.
    page.wait_for_data("instances")
    assert _drawn_pixels(page.tab, "instances") > 0
    assert _drawn_pixels(page.tab, "model-latency") > 0
    for key in ("model-latency", "overhead-latency", "errors", "cpu", "memory"):
        assert page.tab.locator(f'[data-chart="{key}"] canvas').count() == 1, key
    assert page.tab.locator("#errors-4xx").text_content() == "0"
    # Variants as DescribeEndpoint has them, the instance that logged, its log lines.
    described = console_server.client("sagemaker").describe_endpoint(EndpointName=name)
    variant = described["ProductionVariants"][0]
    row = page.tab.locator("#variants tbody tr").first
    assert row.locator("td").nth(0).text_content() == "AllTraffic"
    assert row.locator("td").nth(2).text_content() == str(variant["CurrentInstanceCount"])
    wait_until(
        lambda: page.tab.locator("#instances tbody tr").count() >= 1,
        timeout_s=30,
        what="the instance's log stream",
    )
    assert page.tab.locator("#logs pre").count() == 1
    assert described["EndpointConfigName"] in (page.tab.locator("#config").text_content() or "")
    page.screenshot("endpoint-1280x800")

    # Polling: without a reload, later refreshes come.
    seen = page.refreshes()
    wait_until(lambda: page.refreshes() > seen, timeout_s=30, what="another refresh")

    # Another window redraws from the same history.
    page.tab.locator(".windows a", has_text="1d").click()
    page.wait_for_text("#invocation-total", str(N))

    # A narrow window: one column, nothing wider than the screen.
    page.tab.set_viewport_size({"width": 420, "height": 800})
    page.tab.reload()
    page.wait_for_text("#invocation-total", str(N))
    assert page.tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot("endpoint-420x800")


def test_autoscaling_activities_are_marked_on_the_instance_chart(
    page: Page, console_server: ServerProcess
) -> None:
    sagemaker = console_server.client("sagemaker")
    aas = console_server.client("application-autoscaling")
    name = deploy(sagemaker, "s3://models/iris/model.tar.gz")
    register(aas, name, 1, 3)
    schedule_range(aas, name, 2, 3)
    wait_until(lambda: counts(sagemaker, name) == ("InService", 2, 2), 90, "the scale-out")
    activities = aas.describe_scaling_activities(
        ServiceNamespace="sagemaker", ResourceId=resource_id(name)
    )["ScalingActivities"]
    page.open(f"/console/#/endpoint/{name}?window=1h")
    page.wait_for_text("#instance-total", "2")
    chart = page.tab.locator('[data-chart="instances"]')
    wait_until(
        lambda: chart.get_attribute("data-marks") == str(len(activities)),
        timeout_s=30,
        what="one mark per activity",
    )
    assert _drawn_pixels(page.tab, "instances", (0x9A, 0x67, 0x00)) > 0  # the dashed marks
    events = page.tab.locator("#events").text_content() or ""
    for activity in activities:
        assert activity["Cause"] in events
    page.screenshot("autoscaling")


def test_a_serverless_endpoint_charts_its_cold_starts(
    page: Page, console_server: ServerProcess
) -> None:
    sagemaker = console_server.client("sagemaker")
    name = deploy_serverless(sagemaker, "s3://models/iris/model.tar.gz", max_concurrency=2)
    console_server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=json.dumps(iris_rows(1)), ContentType="application/json"
    )
    cw = console_server.client("cloudwatch")

    def cold_starts() -> float:
        now = datetime.datetime.now(UTC)
        return sum(
            p["Sum"]
            for p in cw.get_metric_statistics(
                Namespace="Modelhost/Endpoints",
                MetricName="ColdStarts",
                Dimensions=[
                    {"Name": "EndpointName", "Value": name},
                    {"Name": "VariantName", "Value": "AllTraffic"},
                ],
                StartTime=now - datetime.timedelta(minutes=30),
                EndTime=now + datetime.timedelta(minutes=1),
                Period=60,
                Statistics=["Sum"],
            )["Datapoints"]
        )

    wait_until(lambda: cold_starts() >= 1, timeout_s=60, what="the cold start recorded")
    page.open(f"/console/#/endpoint/{name}?window=1h")
    page.wait_for_text("#invocation-total", "1")
    page.wait_for_data("cold-starts")
    assert _drawn_pixels(page.tab, "cold-starts") > 0
    assert page.tab.locator('[data-chart="setup-time"] canvas').count() == 1
    page.open("/console/#/endpoints")
    row = page.tab.locator("#endpoints tbody tr", has_text=name)
    wait_until(lambda: row.count() == 1, timeout_s=30, what="the endpoint's row")
    assert "(serverless)" in (row.locator("td").nth(2).text_content() or "")
    page.screenshot("serverless")


def _peak_concurrency(cw: Any, endpoint: str) -> float | None:
    points = recent(
        cw, "Modelhost/Endpoints", "ConcurrentExecutions", variant(endpoint), 3600, ["Maximum"]
    )
    return max(p["Maximum"] for p in points) if points else None


def test_a_serverless_endpoint_charts_its_concurrency_against_max_concurrency(
    page: Page, console_server: ServerProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "open"
    url = put_gated_model(console_server.data_dir, gate)
    sagemaker = console_server.client("sagemaker")
    name = deploy_serverless(sagemaker, url, max_concurrency=4, image="modelhost/python")
    cw = console_server.client("cloudwatch")
    runtime = console_server.client("sagemaker-runtime", retries=0)
    with held_invocations(runtime, name, 3, gate):
        wait_until(lambda: _peak_concurrency(cw, name) == 3, timeout_s=60, what="the peak of 3")
        page.open(f"/console/#/endpoint/{name}?window=1h")
        page.wait_for_text("#concurrency-peak", "3")
        page.wait_for_data("concurrency")
        assert _drawn_pixels(page.tab, "concurrency") > 0  # the executions
        assert _drawn_pixels(page.tab, "concurrency", (0x8A, 0x94, 0xA3)) > 0  # the limit
        label = page.tab.locator("#concurrency-peak + .label").text_content() or ""
        assert label.endswith("MaxConcurrency 4")
        # Beside the cold starts.
        beside = "document.querySelector('[data-chart=concurrency]').nextElementSibling"
        assert page.tab.evaluate(f"{beside}.dataset.chart") == "cold-starts"
        page.screenshot("serverless-concurrency")
    # The page's peak is the API's, after the requests are answered too.
    assert _peak_concurrency(cw, name) == 3


def test_an_asynchronous_endpoint_charts_its_backlog(
    page: Page, console_server: ServerProcess
) -> None:
    sagemaker = console_server.client("sagemaker")
    name = deploy_async(sagemaker, "s3://models/iris/model.tar.gz", image="modelhost/sklearn")
    source = f"s3://async-inputs/{name}/in.csv"
    _put(console_server, source, b"5.1,3.5,1.4,0.2\n")
    runtime = console_server.client("sagemaker-runtime")
    for _ in range(3):
        answer = runtime.invoke_endpoint_async(
            EndpointName=name, InputLocation=source, ContentType="text/csv"
        )
        wait_for_object(console_server.data_dir, answer["OutputLocation"])
    cw = console_server.client("cloudwatch")
    wait_until(lambda: _invocations(cw, name) == 3, timeout_s=60, what="3 invocations recorded")
    page.open(f"/console/#/endpoint/{name}?window=1h")
    page.wait_for_text("#invocation-total", "3")
    page.wait_for_data("backlog", "data-values")
    # A request the model cannot read fails: the page lists it with its error, and the
    # counts are the server's own.
    bad = f"s3://async-inputs/{name}/bad.csv"
    _put(console_server, bad, b"not,numbers,at,all\n")
    failed = runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=bad, ContentType="text/csv"
    )
    wait_for_object(console_server.data_dir, failed["FailureLocation"])
    row = page.tab.locator("#async-requests tbody tr", has_text=failed["InferenceId"])
    wait_until(lambda: row.count() == 1, timeout_s=30, what="the failed request's row")
    assert row.locator(".status").text_content() == "failed"
    assert (row.locator(".error").text_content() or "").strip()
    with urllib.request.urlopen(f"{console_server.url}/endpoints/{name}/async-requests") as got:
        counts = json.loads(got.read())["Counts"]
    assert counts["failed"] == 1
    assert page.tab.locator("#async-counts").text_content() == (
        f"{counts['queued']} queued · {counts['running']} running · "
        f"{counts['failed']} failed · {counts['succeeded']} succeeded"
    )
    page.screenshot("async")


def test_endpoints_list_shows_status_variants_and_instances(
    page: Page, console_server: ServerProcess, loaded_endpoint: str
) -> None:
    page.open("/console/")
    assert page.tab.locator("form.logout").count() == 0  # no access keys: no sign-in
    row = page.tab.locator("#endpoints tbody tr", has_text=loaded_endpoint)
    wait_until(lambda: row.count() == 1, timeout_s=30, what="the endpoint's row")
    cells = row.locator("td")
    assert cells.nth(1).text_content() == "InService"
    assert cells.nth(2).text_content() == "AllTraffic: 1/1"
    assert cells.nth(3).text_content() == "1"
    assert (cells.nth(4).text_content() or "").startswith("$")
    row.locator("a").click()
    page.wait_for_text("#invocation-total", str(N))
    page.screenshot("endpoints")


def _put(server: ServerProcess, uri: str, data: bytes) -> None:
    path = server.data_dir / "objects" / uri.removeprefix("s3://")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _transform(server: ServerProcess, model: str, source: str, **extra: Any) -> str:
    name = unique("tj")
    server.client("sagemaker").create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": unique("s3://batch/out"), "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **extra,
    )
    return name


@pytest.fixture(scope="module")
def batch_model(console_server: ServerProcess) -> str:
    name = unique("iris-batch")
    console_server.client("sagemaker").create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "modelhost/sklearn",
            "ModelDataUrl": "s3://models/iris/model.tar.gz",
        },
    )
    return name


def test_transform_jobs_progress_to_complete_and_failures_show_why(
    page: Page, console_server: ServerProcess, batch_model: str
) -> None:
    base = unique("s3://batch/in")
    rows = iris_rows(6)
    for i in range(6):  # several objects: the bar moves object by object
        data = "".join(",".join(map(str, rows[(i + j) % 6])) + "\n" for j in range(40))
        _put(console_server, f"{base}/part-{i}.csv", data.encode())
    _put(console_server, f"{base}-bad/a.csv", b"not,a,number,at all\n")
    job = _transform(console_server, batch_model, f"{base}/", BatchStrategy="SingleRecord")
    bad = _transform(console_server, batch_model, f"{base}-bad/")
    page.open("/console/#/transform-jobs")
    bar = page.tab.locator(f'progress[data-job="{job}"]')
    fractions: list[float] = []

    def complete() -> bool:
        if bar.count():
            # The status first: a poll may redraw the bar between the two reads, and once
            # it says Completed every later drawing of it is full.
            done = bar.get_attribute("data-status") == "Completed"
            fractions.append(float(bar.get_attribute("data-fraction") or 0))
            return done
        return False

    wait_until(complete, timeout_s=120, what="the job's bar to reach Completed")
    assert fractions[-1] == 1.0
    assert fractions == sorted(fractions), "the bar never goes back"
    sagemaker = console_server.client("sagemaker")
    assert sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == (
        "Completed"
    )
    failed = page.tab.locator("#transform-jobs tbody tr", has_text=bad)
    wait_until(
        lambda: failed.locator(".status").text_content(timeout=1000) == "Failed",
        timeout_s=120,
        what="the bad job to fail",
    )
    reason = sagemaker.describe_transform_job(TransformJobName=bad)["FailureReason"]
    assert reason
    wait_until(
        lambda: failed.locator("td").nth(6).text_content(timeout=1000) == reason,
        timeout_s=30,
        what="the failure reason",
    )
    page.screenshot("transform-jobs")


def _schedule(server: ServerProcess, model: str, cron: str, source: str) -> str:
    name = unique("sched")
    template = {
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://x/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": unique("s3://batch/out"), "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    control.call(
        server.url,
        "Modelhost.CreateSchedule",
        {
            "ScheduleName": name,
            "ScheduleExpression": cron,
            "InputPrefixTemplate": source,
            "TransformJobTemplate": template,
        },
    )
    return name


def test_transform_schedules_show_their_next_run_and_last_runs(
    page: Page, console_server: ServerProcess, batch_model: str
) -> None:
    base = unique("s3://batch/sched")
    _put(console_server, f"{base}/rows.csv", b"5.1,3.5,1.4,0.2\n6.2,3.4,5.4,2.3\n")
    yearly = _schedule(console_server, batch_model, "0 3 1 1 *", f"{base}/")
    often = _schedule(console_server, batch_model, "* * * * * */15", f"{base}/")
    try:
        page.open("/console/#/transform-jobs")
        row = page.tab.locator("#schedules tbody tr", has_text=yearly)
        wait_until(lambda: row.count() == 1, timeout_s=30, what="the schedule's row")
        described = control.call(
            console_server.url, "Modelhost.DescribeSchedule", {"ScheduleName": yearly}
        )
        cell = row.locator("td.next-run")
        assert float(cell.get_attribute("data-next-run") or 0) == described["NextRunTime"]
        shown = page.tab.evaluate(
            "t => new Date(t * 1000).toLocaleString()", described["NextRunTime"]
        )
        assert cell.text_content() == shown
        assert row.locator(".status").first.text_content() == "Enabled"
        assert "No run yet" in (row.locator("td.runs").text_content() or "")
        # The frequent one runs: its latest job is listed with the outcome the API gives.
        runs = page.tab.locator("#schedules tbody tr", has_text=often).locator(".run")
        wait_until(lambda: runs.count() >= 1, timeout_s=60, what="the schedule's first run")
        job = runs.first.get_attribute("data-job") or ""
        assert job.startswith(f"{often}-")
        sagemaker = console_server.client("sagemaker")
        wait_for(
            lambda: sagemaker.describe_transform_job(TransformJobName=job),
            "TransformJobStatus",
            {"Completed", "Failed"},
            f"job {job}",
            120,
        )
        status = sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"]
        assert status == "Completed"
        outcome = page.tab.locator(f'#schedules .run[data-job="{job}"] .status')
        wait_until(
            lambda: outcome.text_content(timeout=1000) == status,
            timeout_s=30,
            what="the run's outcome",
        )
        page.screenshot("transform-schedules")
    finally:
        for name in (yearly, often):
            control.call(console_server.url, "Modelhost.DeleteSchedule", {"ScheduleName": name})


def test_models_and_endpoint_configs_lists(
    page: Page, console_server: ServerProcess, loaded_endpoint: str
) -> None:
    page.open("/console/#/models")
    model = page.tab.locator("#models tbody tr a", has_text=loaded_endpoint)
    wait_until(lambda: model.count() == 1, timeout_s=30, what="the model's row")
    model.click()
    wait_until(
        lambda: '"ModelName"' in (page.tab.locator("#detail pre").text_content(timeout=1000) or ""),
        timeout_s=30,
        what="the model's description",
    )
    described = json.loads(page.tab.locator("#detail pre").text_content() or "{}")
    assert described["ModelName"] == loaded_endpoint
    page.open("/console/#/endpoint-configs")
    config = page.tab.locator("#endpoint-configs tbody tr a", has_text=loaded_endpoint)
    wait_until(lambda: config.count() == 1, timeout_s=30, what="the config's row")
    page.screenshot("endpoint-configs")


def test_recommendation_jobs_and_their_candidates(
    page: Page, console_server: ServerProcess, batch_model: str
) -> None:
    payloads = console_server.data_dir / "objects" / "payloads" / "iris" / "payloads.tar.gz"
    payloads.parent.mkdir(parents=True, exist_ok=True)
    payloads.write_bytes(model_tarball({"a.csv": b"5.1,3.5,1.4,0.2\n"}))
    sagemaker = console_server.client("sagemaker")
    name = unique("rec")
    sagemaker.create_inference_recommendations_job(
        JobName=name,
        JobType="Advanced",
        RoleArn="arn:aws:iam::000000000000:role/any",
        InputConfig={
            "ModelName": batch_model,
            "ContainerConfig": {
                "Domain": "MACHINE_LEARNING",
                "Framework": "SAGEMAKER-SCIKIT-LEARN",
                "PayloadConfig": {
                    "SamplePayloadUrl": "s3://payloads/iris/payloads.tar.gz",
                    "SupportedContentTypes": ["text/csv"],
                },
            },
            "TrafficPattern": {
                "TrafficType": "PHASES",
                "Phases": [{"InitialNumberOfUsers": 1, "SpawnRate": 0, "DurationInSeconds": 1}],
            },
            "EndpointConfigurations": [{"InstanceType": "ml.c5.large"}],
        },
        StoppingConditions={
            "ModelLatencyThresholds": [{"Percentile": "P95", "ValueInMilliseconds": 2000}]
        },
    )
    job = wait_for(
        lambda: sagemaker.describe_inference_recommendations_job(JobName=name),
        "Status",
        {"COMPLETED", "FAILED"},
        f"job {name}",
        180,
    )
    assert job["Status"] == "COMPLETED", job.get("FailureReason")
    page.open("/console/#/recommendations")
    row = page.tab.locator("#recommendations tbody tr", has_text=name)
    wait_until(lambda: row.count() == 1, timeout_s=30, what="the job's row")
    assert row.locator(".status").text_content() == "COMPLETED"
    row.locator("a").click()
    candidate = page.tab.locator("#candidates tbody tr").first
    wait_until(lambda: candidate.count() == 1, timeout_s=30, what="the candidate's row")
    cells = candidate.locator("td")
    (recommendation,) = job["InferenceRecommendations"]
    assert cells.nth(0).text_content() == "ml.c5.large"
    assert cells.nth(4).text_content() == str(recommendation["Metrics"]["MaxInvocations"])
    assert cells.nth(5).text_content() == str(recommendation["Metrics"]["ModelLatency"])
    # The latency-against-throughput curve: one point per traffic step the job ran.
    url = f"{console_server.url}/inference-recommendations-jobs/{name}/load-curves"
    with urllib.request.urlopen(url) as got:
        curves = json.loads(got.read())
    steps = sum(len(c["Points"]) for c in curves["Candidates"])
    assert steps >= 1
    curve = page.tab.locator('[data-chart="load-curves"]')
    wait_until(lambda: curve.get_attribute("data-points") == str(steps), timeout_s=30, what="curve")
    assert curve.get_attribute("data-candidates") == "1"
    assert _drawn_pixels(page.tab, "load-curves") > 0
    page.screenshot("recommendation")


def _request(
    server: ServerProcess, method: str, path: str, body: bytes = b"", **headers: str
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_console_api_only_reads_and_only_for_its_own_pages(console_server: ServerProcess) -> None:
    ok = _request(
        console_server,
        "POST",
        "/console/api/SageMaker.ListModels",
        b"{}",
        **{"X-Modelhost-Console": "1"},
    )
    assert ok.status == 200
    csp = ok.getheader("content-security-policy") or ""
    assert "script-src 'self'" in csp and "http" not in csp
    writes = _request(
        console_server,
        "POST",
        "/console/api/SageMaker.DeleteModel",
        b'{"ModelName": "x"}',
        **{"X-Modelhost-Console": "1"},
    )
    assert writes.status == 400
    assert writes.getheader("x-amzn-errortype") == "ValidationException"
    # A form on another site can send neither the header nor a matching Origin.
    assert _request(console_server, "POST", "/console/api/SageMaker.ListModels", b"{}").status == (
        400
    )
    foreign = _request(
        console_server,
        "POST",
        "/console/api/SageMaker.ListModels",
        b"{}",
        **{"X-Modelhost-Console": "1", "Origin": "http://elsewhere.example"},
    )
    assert foreign.status == 400


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("console-auth") / "data"
    policy = data.parent / "policy.json"
    policy.write_text(
        json.dumps(
            {
                KEY: {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
                "other": {
                    "Statement": [
                        {"Effect": "Allow", "Action": "sagemaker:ListModels", "Resource": "*"}
                    ]
                },
            }
        )
    )
    with running_server(
        data,
        env={
            "MODELHOST_ACCESS_KEYS": f"other:x,{KEY}:{SECRET},{GUESSED}:{SECRET}",
            "MODELHOST_POLICY_FILE": str(policy),
        },
    ) as process:
        yield process


def test_with_access_keys_the_console_needs_a_sign_in(
    browser: Any, secured: ServerProcess, tmp_path: Path
) -> None:
    # Without a session: pages send to the sign-in, files and the API answer 401.
    first = _request(secured, "GET", "/console/")
    assert first.status == 303 and first.getheader("location") == "/console/login"
    for path in ("/console/static/console.js", "/console/static/vendor/uPlot.iife.min.js"):
        assert _request(secured, "GET", path).status == 401
    api = _request(
        secured, "POST", "/console/api/SageMaker.ListModels", b"{}", **{"X-Modelhost-Console": "1"}
    )
    assert api.status == 401
    forged = _request(
        secured,
        "POST",
        "/console/api/SageMaker.ListModels",
        b"{}",
        **{"X-Modelhost-Console": "1", "Cookie": "modelhost_console=Y29uc29sZWtleQ.9999999999.x"},
    )
    assert forged.status == 401

    tab = Page(browser, secured.url, tmp_path)
    try:
        tab.open("/console/")
        assert tab.tab.url == secured.url + "/console/login"
        tab.tab.fill("#access_key_id", KEY)
        tab.tab.fill("#secret_access_key", "not-the-secret")
        with tab.tab.expect_response(lambda r: r.url.endswith("/console/login")) as answer:
            tab.tab.click("button[type=submit]")
        assert answer.value.status == 401
        assert tab.tab.locator(".error").text_content() == "Wrong access key id or secret."
        assert tab.context.cookies() == []
        tab.screenshot("sign-in-refused")
        tab.errors.clear()  # the browser logs the 401 itself

        tab.tab.fill("#access_key_id", KEY)
        tab.tab.fill("#secret_access_key", SECRET)
        tab.tab.click("button[type=submit]")
        tab.tab.wait_for_url(secured.url + "/console/")
        tab.wait_for_text("#endpoints p", "No endpoints yet.")
        (cookie,) = tab.context.cookies()
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/console"
        # The session's key is what the API calls run as: the page keeps refreshing.
        seen = tab.refreshes()
        wait_until(lambda: tab.refreshes() > seen, timeout_s=30, what="another refresh")
        tab.screenshot("signed-in")
        assert tab.errors == []

        tab.tab.click("form.logout button")
        tab.tab.wait_for_url(secured.url + "/console/login")
        assert tab.context.cookies() == []
    finally:
        tab.context.close()


def test_console_calls_run_under_the_session_keys_policy(secured: ServerProcess) -> None:
    signed_in = _request(
        secured,
        "POST",
        "/console/login",
        b"access_key_id=other&secret_access_key=x",
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert signed_in.status == 303
    cookie = (signed_in.getheader("set-cookie") or "").split(";")[0]
    headers = {"X-Modelhost-Console": "1", "Cookie": cookie}
    allowed = _request(secured, "POST", "/console/api/SageMaker.ListModels", b"{}", **headers)
    assert allowed.status == 200
    denied = _request(secured, "POST", "/console/api/SageMaker.ListEndpoints", b"{}", **headers)
    assert denied.status == 400  # as SageMaker answers an IAM denial
    assert denied.getheader("x-amzn-errortype") == "AccessDeniedException"
    # modelhost's own reading routes go through the same policy, under their own actions.
    for target, body in (
        ("Modelhost.ListAsyncRequests", b'{"EndpointName": "any"}'),
        ("Modelhost.GetLoadCurves", b'{"JobName": "any"}'),
    ):
        refused = _request(secured, "POST", f"/console/api/{target}", body, **headers)
        assert refused.status == 400, target
        assert refused.getheader("x-amzn-errortype") == "AccessDeniedException", target
    unknown = _request(
        secured,
        "POST",
        "/console/api/Modelhost.GetLoadCurves",
        b'{"JobName": "any", "Extra": 1}',
        **headers,
    )
    assert unknown.status == 400
    assert unknown.getheader("x-amzn-errortype") == "ValidationException"


def _sign_in(server: ServerProcess, key: str, secret: str) -> tuple[int, dict[str, str], str]:
    """The sign-in form's answer: its status, headers and page."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request(
        "POST",
        "/console/login",
        body=f"access_key_id={key}&secret_access_key={secret}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = connection.getresponse()
    page = response.read().decode()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, page


def test_guessing_a_secret_locks_the_key_out_of_the_sign_in(secured: ServerProcess) -> None:
    for guess in range(6):  # five free failures; the sixth locks the key
        status, _, page = _sign_in(secured, GUESSED, f"guess-{guess}")
        assert status == 401 and "Wrong access key id or secret." in page
    # Even the right secret is refused while locked, before it is compared.
    status, headers, page = _sign_in(secured, GUESSED, SECRET)
    assert status == 429 and "set-cookie" not in headers
    assert headers["retry-after"] == "1"
    assert headers["content-type"].startswith("text/html")
    assert "Too many failed sign-ins for this access key or from this address" in page
    # Other keys still sign in from the same address.
    assert _sign_in(secured, "other", "x")[0] == 303
    time.sleep(int(headers["retry-after"]))
    status, headers, _ = _sign_in(secured, GUESSED, SECRET)
    assert status == 303 and headers["set-cookie"].startswith("modelhost_console=")
    # The success cleared the key's count: the next wrong secret is a free failure again.
    assert _sign_in(secured, GUESSED, "wrong")[0] == 401
    assert _sign_in(secured, GUESSED, "wrong")[0] == 401


def test_the_wheel_ships_the_console_files(tmp_path: Path) -> None:
    """Package data: a built wheel holds the pages, the script and the vendored chart
    library with its licence."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("modelhost-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "index.html",
        "login.html",
        "console.js",
        "console.css",
        "vendor/uPlot.iife.min.js",
        "vendor/uPlot.min.css",
        "vendor/uPlot.LICENSE",
    ):
        assert f"modelhost/console/static/{shipped}" in names, shipped
