"""The `modelhost` command."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost import console

app = typer.Typer(help="Self-hosted model deployment that speaks the SageMaker API.",
                  no_args_is_help=True)


@app.callback()
def main() -> None:
    """Self-hosted model deployment that speaks the SageMaker API."""


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for the control plane and runtime.")] = 8765,
    data_dir: Annotated[Path, typer.Option(help="Where state and artifacts live.")] = Path(
        ".modelhost"
    ),
    region: Annotated[str, typer.Option(help="Region shown in ARNs.")] = "us-east-1",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the control plane and the runtime on one port."""
    import uvicorn

    from modelhost.config import Settings
    from modelhost.server import ModelhostApp

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings(data_dir=data_dir.resolve(), host=host, port=port, region=region)
    except ValueError as exc:  # a bad MODELHOST_* variable
        typer.echo(f"modelhost server: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(
        ModelhostApp(settings), host=host, port=port, loop="uvloop", http="httptools",
        lifespan="on", access_log=False, log_level="warning",
        # Nothing sits in front of the server to trust forwarded headers from, and each
        # of these costs time on every request of the hot path.
        proxy_headers=False, server_header=False, date_header=False, ws="none",
    )


# --- client commands: everything below talks to a running server through boto3 -----------

DEFAULT_URL = "http://127.0.0.1:8765"
REGION = "us-east-1"
# statuses after which waiting for InService is pointless
_HOPELESS = {"Failed", "Deleting", "OutOfService", "UpdateRollbackFailed"}

EndpointUrl = Annotated[str, typer.Option(
    "--endpoint-url", envvar="MODELHOST_URL", show_envvar=True,
    help="The modelhost server to talk to.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw API answer as JSON.")]
NameContains = Annotated[str | None, typer.Option(help="Only names containing this.")]

models_app = typer.Typer(help="Models: artifacts + image.", no_args_is_help=True)
configs_app = typer.Typer(help="Endpoint configs: the variants an endpoint runs.",
                          no_args_is_help=True)
endpoints_app = typer.Typer(help="Endpoints: running configs you can invoke.",
                            no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(configs_app, name="endpoint-configs")
app.add_typer(endpoints_app, name="endpoints")
transform_app = typer.Typer(help="Batch transform jobs.", no_args_is_help=True)
schedules_app = typer.Typer(help="Schedules that create transform jobs on a cron expression.",
                            no_args_is_help=True)
app.add_typer(transform_app, name="transform-jobs")
app.add_typer(schedules_app, name="schedules")
recommend_app = typer.Typer(help="Inference recommendations: load test candidate instance "
                                 "types, get cost and latency.", no_args_is_help=True)
app.add_typer(recommend_app, name="recommend")


class Api:
    """boto3 clients for one server, built lazily: `models list` should not pay for a
    runtime client it never uses."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            # The server does not need real AWS credentials; skipping the EC2 metadata
            # lookup keeps a machine without any from stalling a second on every command.
            os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
            session = boto3.Session(region_name=REGION)
            dummy = {} if session.get_credentials() else {
                "aws_access_key_id": "modelhost", "aws_secret_access_key": "modelhost"}
            self._clients[service] = session.client(
                service, endpoint_url=self.url, region_name=REGION, **dummy,
                # one attempt: a refused connection should be reported now, not after
                # botocore's back-off; reads wait long enough for a slow model.
                config=Config(retries={"max_attempts": 1, "mode": "standard"},
                              connect_timeout=5, read_timeout=120),
            )
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @property
    def runtime(self) -> Any:
        return self._client("sagemaker-runtime")

    def get_json(self, path: str, query: str = "") -> Any:
        """GET one of modelhost's own JSON routes, signed like the boto3 calls, so it
        works against a server that checks SigV4. HTTPError carries a SageMaker error."""
        import json
        import urllib.request

        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"{self.url.rstrip('/')}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(method="GET", url=url)
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        credentials = boto3.Session().get_credentials() or Credentials("modelhost", "modelhost")
        SigV4Auth(credentials.get_frozen_credentials(), "sagemaker", REGION).add_auth(request)
        prepared = urllib.request.Request(url, headers=dict(request.headers.items()))
        with urllib.request.urlopen(prepared, timeout=30) as response:
            return json.loads(response.read())

    def collect(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a List* call: a CLI listing that stops at page one silently lies."""
        pages = self.sagemaker.get_paginator(operation).paginate(**params)
        return [item for page in pages for item in page[key]]


@contextmanager
def _server(url: str) -> Iterator[Api]:
    """Turn the failures a user can cause or fix into one line and exit code 1."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        yield Api(url)
    except ClientError as exc:
        problem = exc.response.get("Error", {})
        console.error(f"{problem.get('Code', 'Unknown')}: {problem.get('Message', exc)}")
        raise typer.Exit(1) from None
    except EndpointConnectionError:
        console.error(f"no modelhost server at {url} (start one with `modelhost server`, "
                      "or pass --endpoint-url / set MODELHOST_URL)")
        raise typer.Exit(1) from None
    except BotoCoreError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None


def _filters(name_contains: str | None) -> dict[str, Any]:
    return {"NameContains": name_contains} if name_contains else {}


@models_app.command("list")
def models_list(endpoint_url: EndpointUrl = DEFAULT_URL, name_contains: NameContains = None,
                as_json: AsJson = False) -> None:
    """List models, newest first."""
    with _server(endpoint_url) as api:
        models = api.collect("list_models", "Models", **_filters(name_contains))
    if as_json:
        console.print_json({"Models": models})
    else:
        console.out.print(console.models_table(models))


@models_app.command("describe")
def models_describe(name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
                    as_json: AsJson = False) -> None:
    """Show a model's containers, artifacts and environment."""
    with _server(endpoint_url) as api:
        model = api.sagemaker.describe_model(ModelName=name)
    if as_json:
        console.print_json(model)
    else:
        console.describe_model(model)


@configs_app.command("list")
def configs_list(endpoint_url: EndpointUrl = DEFAULT_URL, name_contains: NameContains = None,
                 as_json: AsJson = False) -> None:
    """List endpoint configs, newest first."""
    with _server(endpoint_url) as api:
        configs = api.collect("list_endpoint_configs", "EndpointConfigs",
                              **_filters(name_contains))
    if as_json:
        console.print_json({"EndpointConfigs": configs})
    else:
        console.out.print(console.endpoint_configs_table(configs))


@configs_app.command("describe")
def configs_describe(name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
                     as_json: AsJson = False) -> None:
    """Show an endpoint config's variants."""
    with _server(endpoint_url) as api:
        config = api.sagemaker.describe_endpoint_config(EndpointConfigName=name)
    if as_json:
        console.print_json(config)
    else:
        console.describe_endpoint_config(config)


@endpoints_app.command("list")
def endpoints_list(
    endpoint_url: EndpointUrl = DEFAULT_URL, name_contains: NameContains = None,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. InService.")] = None,
    as_json: AsJson = False,
) -> None:
    """List endpoints with their status and instance counts."""
    from botocore.exceptions import ClientError

    params = _filters(name_contains) | ({"StatusEquals": status} if status else {})
    with _server(endpoint_url) as api:
        endpoints = api.collect("list_endpoints", "Endpoints", **params)
        if as_json:
            console.print_json({"Endpoints": endpoints})
            return
        counts: dict[str, tuple[int, int] | None] = {}
        for endpoint in endpoints:  # ListEndpoints has no counts; one describe each
            try:
                variants = api.sagemaker.describe_endpoint(
                    EndpointName=endpoint["EndpointName"])["ProductionVariants"]
            except ClientError:  # deleted since the listing
                counts[endpoint["EndpointName"]] = None
                continue
            counts[endpoint["EndpointName"]] = (
                sum(v.get("CurrentInstanceCount", 0) for v in variants),
                sum(v.get("DesiredInstanceCount", 0) for v in variants))
    console.out.print(console.endpoints_table(endpoints, counts))


@endpoints_app.command("describe")
def endpoints_describe(name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
                       as_json: AsJson = False) -> None:
    """Show an endpoint's status, failure reason and variants."""
    from botocore.exceptions import ClientError

    with _server(endpoint_url) as api:
        endpoint = api.sagemaker.describe_endpoint(EndpointName=name)
        if as_json:
            console.print_json(endpoint)
            return
        try:  # for the instance types, which DescribeEndpoint leaves out
            config = api.sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"])
        except ClientError:
            config = None
    console.describe_endpoint(endpoint, config)


@endpoints_app.command("wait")
def endpoints_wait(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 0.5,
) -> None:
    """Wait until an endpoint is InService; exit 1 with the reason if it fails or times out,
    so scripts can chain `modelhost endpoints wait X && ...`."""
    started = time.monotonic()
    with _server(endpoint_url) as api, console.waiting(name) as report:
        while True:
            endpoint = api.sagemaker.describe_endpoint(EndpointName=name)
            state = endpoint["EndpointStatus"]
            report(state)
            if (state == "InService" or state in _HOPELESS
                    or time.monotonic() - started > timeout):
                break
            time.sleep(interval)
    elapsed = time.monotonic() - started
    if state == "InService":
        console.out.print(f"{name} is [green]InService[/] ({elapsed:.1f}s)", highlight=False)
    elif state in _HOPELESS:
        console.error(f"{name} is {state}: {endpoint.get('FailureReason') or 'no reason given'}")
        raise typer.Exit(1)
    else:
        console.error(f"{name} still {state} after {timeout:g}s")
        raise typer.Exit(1)


@endpoints_app.command("delete")
def endpoints_delete(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Delete an endpoint (its config and model stay, as in SageMaker)."""
    with _server(endpoint_url) as api:
        api.sagemaker.delete_endpoint(EndpointName=name)
    console.out.print(f"deleting {name}")


@endpoints_app.command("async-requests")
def endpoints_async_requests(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
    state: Annotated[list[str] | None, typer.Option(
        help="queued, running, failed or succeeded; repeat for several (default: all but "
             "succeeded).")] = None,
    as_json: AsJson = False,
) -> None:
    """Show an asynchronous endpoint's backlog, in-flight and failed requests."""
    import json
    import urllib.error
    from urllib.parse import urlencode

    try:
        answer = Api(endpoint_url).get_json(f"/endpoints/{name}/async-requests",
                                            urlencode([("state", s) for s in state or []]))
    except urllib.error.HTTPError as exc:
        problem = json.loads(exc.read() or b"{}")
        console.error(f"{problem.get('__type', exc.code)}: {problem.get('message', exc)}")
        raise typer.Exit(1) from None
    except urllib.error.URLError:
        console.error(f"no modelhost server at {endpoint_url} (start one with `modelhost "
                      "server`, or pass --endpoint-url / set MODELHOST_URL)")
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(answer)
    else:
        console.out.print(console.async_requests_table(answer))


@endpoints_app.command("invoke")
def endpoints_invoke(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
    body: Annotated[str | None, typer.Option(help="Request body, literally.")] = None,
    body_file: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Read the request body from this file.")] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of the body.")] = "text/csv",
    accept: Annotated[str | None, typer.Option(help="Wanted response type.")] = None,
    custom_attributes: Annotated[str | None, typer.Option(help="Passed to the model.")] = None,
    stream: Annotated[bool, typer.Option(
        "--stream", help="InvokeEndpointWithResponseStream: print each part of the answer "
                         "as the model produces it.")] = False,
) -> None:
    """Send one request; the response body goes to stdout, the variant that served it to
    stderr, so `> out.csv` captures only the body."""
    if (body is None) == (body_file is None):
        console.error("give exactly one of --body or --body-file")
        raise typer.Exit(2)
    payload = body.encode() if body is not None else body_file.read_bytes()  # type: ignore[union-attr]
    params: dict[str, Any] = {"EndpointName": name, "ContentType": content_type, "Body": payload}
    if accept:
        params["Accept"] = accept
    if custom_attributes:
        params["CustomAttributes"] = custom_attributes
    with _server(endpoint_url) as api:
        if stream:
            response = api.runtime.invoke_endpoint_with_response_stream(**params)
            answer = b""
            for event in response["Body"]:
                answer = event.get("PayloadPart", {}).get("Bytes", b"")
                sys.stdout.buffer.write(answer)
                sys.stdout.flush()
            if not answer.endswith(b"\n"):
                sys.stdout.buffer.write(b"\n")
        else:
            response = api.runtime.invoke_endpoint(**params)
            answer = response["Body"].read()
            sys.stdout.buffer.write(answer if answer.endswith(b"\n") else answer + b"\n")
    sys.stdout.flush()
    console.err.print(f"[dim]variant: {response.get('InvokedProductionVariant', '-')}  "
                      f"content-type: {response.get('ContentType', '-')}[/]", soft_wrap=True)


# --- load generation ----------------------------------------------------------------------


@app.command("load")
def load(
    target: Annotated[str, typer.Argument(
        help="An endpoint name on --endpoint-url, or any http:// URL to POST to.")],
    endpoint_url: EndpointUrl = DEFAULT_URL,
    phase: Annotated[list[str] | None, typer.Option(
        help="RATE:SECONDS, or START-END:SECONDS for a linear ramp; repeat for more phases. "
             "Requests/s in open loop, users in closed loop. Default 100:10.")] = None,
    closed: Annotated[bool, typer.Option(
        "--closed", help="Closed loop: each user waits for its answer before sending again "
                         "(default: open loop, sent on schedule).")] = False,
    body: Annotated[str | None, typer.Option(help="Request body, literally.")] = None,
    payload: Annotated[Path | None, typer.Option(
        exists=True, help="File or folder of sample payloads; each request picks one.")] = None,
    lines: Annotated[bool, typer.Option(
        "--lines", help="One payload per line of the --payload file(s).")] = False,
    content_type: Annotated[str, typer.Option(help="Content-Type of the body.")] = "text/csv",
    max_connections: Annotated[int, typer.Option(
        help="Connections (and requests in flight) at most.")] = 256,
    timeout: Annotated[float, typer.Option(help="Seconds before a request counts as "
                                                "a timeout.")] = 10.0,
    timeline: Annotated[bool, typer.Option(
        "--timeline", help="Also show every second: sent, answered, errors, p50, p99.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Drive load at an endpoint and report latency percentiles, throughput and errors."""
    from modelhost.loadgen import LoadSpec, read_payloads, run

    if body is not None and payload is not None:
        console.error("give at most one of --body or --payload")
        raise typer.Exit(2)
    payloads = (read_payloads(payload, lines) if payload is not None
                else ((body or "").encode(),))
    url = target if target.startswith("http://") else (
        f"{endpoint_url.rstrip('/')}/endpoints/{target}/invocations")
    try:
        phases = tuple(_parse_phase(text, closed) for text in (phase or ["100:10"]))
        spec = LoadSpec(url=url, phases=phases, mode="closed" if closed else "open",
                        payloads=payloads, content_type=content_type,
                        max_connections=max_connections, timeout_s=timeout)
    except ValueError as exc:
        console.error(str(exc))
        raise typer.Exit(2) from None
    result = run(spec)
    if as_json:
        console.print_json({"summary": result.summary(), "timeline": [
            {k: v for k, v in second.to_json().items() if k != "histogram"}
            for second in result.timeline]})
    else:
        console.load_report(result, timeline)
    if result.completed == 0:
        raise typer.Exit(1)


def _parse_phase(text: str, closed: bool) -> Any:
    from modelhost.loadgen import Phase

    try:
        level, seconds = text.split(":")
        start, _, end = level.partition("-")
        duration = float(seconds)
        if closed:
            return Phase(duration, users=int(start), end_users=int(end) if end else None)
        return Phase(duration, rate=float(start), end_rate=float(end) if end else None)
    except ValueError:
        raise ValueError(f"bad --phase {text!r}: expected LEVEL:SECONDS or "
                         "START-END:SECONDS") from None
# --- batch transform --------------------------------------------------------------------

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
    endpoint_url: EndpointUrl = DEFAULT_URL, name_contains: NameContains = None,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. Failed.")] = None,
    as_json: AsJson = False,
) -> None:
    """List transform jobs, newest first."""
    from modelhost import transform_console

    params = _filters(name_contains) | ({"StatusEquals": status} if status else {})
    with _server(endpoint_url) as api:
        jobs = api.collect("list_transform_jobs", "TransformJobSummaries", **params)
    if as_json:
        console.print_json({"TransformJobSummaries": jobs})
    else:
        console.out.print(transform_console.jobs_table(jobs))


@transform_app.command("describe")
def transform_describe(name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
                       as_json: AsJson = False) -> None:
    """Show a transform job: input, output, status and progress."""
    from modelhost import transform_console

    with _server(endpoint_url) as api:
        job, progress = _describe_job(api, name)
    if as_json:
        console.print_json({**job, "TransformProgress": progress})
    else:
        transform_console.describe_job(job, progress)


@transform_app.command("wait")
def transform_wait(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 86400,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
) -> None:
    """Follow a job with a progress bar until it ends; exit 1 unless it Completed."""
    from modelhost import transform_console

    started = time.monotonic()
    with _server(endpoint_url) as api, transform_console.job_progress(name) as report:
        while True:
            job, progress = _describe_job(api, name)
            state = job["TransformJobStatus"]
            report(state, progress)
            if state in _JOB_ENDED or time.monotonic() - started > timeout:
                break
            time.sleep(interval)
    if state == "Completed":
        console.out.print(f"{name} [green]Completed[/]: "
                          f"{transform_console.progress_text(progress)}", highlight=False)
        return
    if state in _JOB_ENDED:
        console.error(f"{name} is {state}: {job.get('FailureReason') or 'no reason given'}")
    else:
        console.error(f"{name} still {state} after {timeout:g}s")
    raise typer.Exit(1)


@transform_app.command("stop")
def transform_stop(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Stop a job in progress (its instances stop; finished objects' outputs stay)."""
    with _server(endpoint_url) as api:
        api.sagemaker.stop_transform_job(TransformJobName=name)
    console.out.print(f"stopping {name}")


@schedules_app.command("create")
def schedules_create(
    name: str,
    cron: Annotated[str, typer.Option(help='Cron expression in UTC, e.g. "0 2 * * *"; an '
                                           "optional sixth field is seconds.")],
    input_prefix: Annotated[str, typer.Option(
        "--input", help="Input prefix template, e.g. s3://bucket/in/{date:%Y-%m-%d}/")],
    job_template: Annotated[Path, typer.Option(
        exists=True, dir_okay=False,
        help="JSON file: a CreateTransformJob request without TransformJobName.")],
    endpoint_url: EndpointUrl = DEFAULT_URL,
) -> None:
    """Create a schedule that runs a transform job on the cron expression."""
    import json

    from modelhost import control

    try:
        template = json.loads(job_template.read_text())
    except json.JSONDecodeError as exc:
        console.error(f"{job_template} is not JSON: {exc}")
        raise typer.Exit(2) from None
    with _server(endpoint_url) as api:
        answer = control.call(api.url, "Modelhost.CreateSchedule", {
            "ScheduleName": name, "ScheduleExpression": cron,
            "InputPrefixTemplate": input_prefix, "TransformJobTemplate": template})
    console.out.print(answer["ScheduleArn"], highlight=False)


@schedules_app.command("list")
def schedules_list(endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List schedules with their next run and last job."""
    from modelhost import control, transform_console

    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"MaxResults": 100}
    with _server(endpoint_url) as api:
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
def schedules_describe(name: str, endpoint_url: EndpointUrl = DEFAULT_URL,
                       as_json: AsJson = False) -> None:
    """Show a schedule: cron, input template, next and last run."""
    from modelhost import control, transform_console

    with _server(endpoint_url) as api:
        item = control.call(api.url, "Modelhost.DescribeSchedule", {"ScheduleName": name})
    if as_json:
        console.print_json(item)
    else:
        transform_console.describe_schedule(item)


@schedules_app.command("delete")
def schedules_delete(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Delete a schedule; the jobs it created stay."""
    from modelhost import control

    with _server(endpoint_url) as api:
        control.call(api.url, "Modelhost.DeleteSchedule", {"ScheduleName": name})
    console.out.print(f"deleted {name}")


# --- inference recommender ----------------------------------------------------------------

ChartPath = Annotated[Path | None, typer.Option(
    "--chart", help="Write a latency-vs-throughput PNG here (needs modelhost[plot]).")]


@recommend_app.command("run")
def recommend_run(
    model: Annotated[str, typer.Argument(help="The model to load test.")],
    payload: Annotated[str, typer.Option(
        help="SamplePayloadUrl: a tar.gz of payload files, a prefix, or one object.")],
    endpoint_url: EndpointUrl = DEFAULT_URL,
    instance_type: Annotated[list[str] | None, typer.Option(
        help="A candidate instance type; repeat for more. Default: a few CPU types.")] = None,
    phase: Annotated[list[str] | None, typer.Option(
        help="USERS:SECONDS or START-END:SECONDS (users ramp); repeat for more phases. "
             "Default: 1, 2, 3, 4 users for 10 s each.")] = None,
    latency: Annotated[str | None, typer.Option(
        help="Latency bound PERCENTILE:MS, e.g. P95:100.")] = None,
    max_invocations: Annotated[int | None, typer.Option(
        help="Stop raising the load past this many invocations per minute.")] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of the payloads.")] = "text/csv",
    name: Annotated[str | None, typer.Option(help="Job name (default: generated).")] = None,
    chart: ChartPath = None,
) -> None:
    """Create a recommendation job, wait for it, show the candidates (cheapest that meets
    the bound first) and optionally a chart."""
    import uuid

    job_name = name or f"{model[:40]}-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {"ModelName": model, "ContainerConfig": {"PayloadConfig": {
        "SamplePayloadUrl": payload, "SupportedContentTypes": [content_type]}}}
    if instance_type:
        config["EndpointConfigurations"] = [{"InstanceType": t} for t in instance_type]
    try:
        if phase:
            config["TrafficPattern"] = {"TrafficType": "PHASES",
                                        "Phases": [_traffic_phase(p) for p in phase]}
        stopping: dict[str, Any] = {}
        if latency:
            percentile, _, millis = latency.partition(":")
            stopping["ModelLatencyThresholds"] = [
                {"Percentile": percentile.upper(), "ValueInMilliseconds": int(millis)}]
    except ValueError as exc:
        console.error(str(exc) if "phase" in str(exc) else f"bad --latency {latency!r}: "
                      "expected e.g. P95:100")
        raise typer.Exit(2) from None
    if max_invocations:
        stopping["MaxInvocations"] = max_invocations
    with _server(endpoint_url) as api:
        api.sagemaker.create_inference_recommendations_job(
            JobName=job_name, JobType="Advanced" if (phase or stopping) else "Default",
            RoleArn="arn:aws:iam::000000000000:role/modelhost", InputConfig=config,
            **({"StoppingConditions": stopping} if stopping else {}))
        with console.waiting(job_name) as report:
            while True:
                job = api.sagemaker.describe_inference_recommendations_job(JobName=job_name)
                report(job["Status"])
                if job["Status"] in ("COMPLETED", "FAILED", "STOPPED"):
                    break
                time.sleep(1)
    _show_recommendation(endpoint_url, job_name, chart, as_json=False)


@recommend_app.command("show")
def recommend_show(job: str, endpoint_url: EndpointUrl = DEFAULT_URL, chart: ChartPath = None,
                   as_json: AsJson = False) -> None:
    """Show a recommendation job's candidates and, with --chart, draw them."""
    _show_recommendation(endpoint_url, job, chart, as_json)


@recommend_app.command("list")
def recommend_list(endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List recommendation jobs, newest first."""
    with _server(endpoint_url) as api:
        jobs = api.collect("list_inference_recommendations_jobs",
                           "InferenceRecommendationsJobs")
    if as_json:
        console.print_json({"InferenceRecommendationsJobs": jobs})
    else:
        console.out.print(console.recommendation_jobs_table(jobs))


@recommend_app.command("stop")
def recommend_stop(job: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Stop a job; its temporary endpoints are deleted."""
    with _server(endpoint_url) as api:
        api.sagemaker.stop_inference_recommendations_job(JobName=job)
    console.out.print(f"stopping {job}")


def _traffic_phase(text: str) -> dict[str, int]:
    """USERS:SECONDS or START-END:SECONDS as a SageMaker Phase (SpawnRate: users/minute)."""
    try:
        users, seconds = text.split(":")
        start, _, end = users.partition("-")
        duration = int(seconds)
        spawn = round((int(end) - int(start)) * 60 / duration) if end else 0
        return {"InitialNumberOfUsers": int(start), "SpawnRate": spawn,
                "DurationInSeconds": duration}
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"bad --phase {text!r}: expected USERS:SECONDS or "
                         "START-END:SECONDS") from None


def _show_recommendation(url: str, name: str, chart: Path | None, as_json: bool) -> None:
    import json
    import urllib.request

    with _server(url) as api:
        job = api.sagemaker.describe_inference_recommendations_job(JobName=name)
        steps = api.collect("list_inference_recommendations_job_steps", "Steps", JobName=name)
    if as_json:
        console.print_json({"Job": job, "Steps": steps})
    else:
        console.describe_recommendation_job(job, steps)
    if chart is None:
        return
    from modelhost.recommendation_chart import write_chart

    with urllib.request.urlopen(
            f"{url.rstrip('/')}/inference-recommendations-jobs/{name}/load-curves",
            timeout=30) as response:
        curves = json.load(response)
    from modelhost.api import candidate_label

    best = job.get("InferenceRecommendations", [{}])[0].get("EndpointConfiguration")
    try:
        write_chart(curves, candidate_label(best) if best else None, chart)
    except ImportError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None
    console.err.print(f"chart written to {chart}")
