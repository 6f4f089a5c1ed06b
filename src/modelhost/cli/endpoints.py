"""`modelhost endpoints`: list, inspect, wait for, invoke, read the logs of and delete
endpoints."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.cli._shared import (
    DEFAULT_URL,
    AsJson,
    EndpointUrl,
    NameContains,
    connected,
    name_filter,
    wait_failed,
)

endpoints_app = typer.Typer(help="Endpoints: running configs you can invoke.", no_args_is_help=True)
# statuses after which waiting for InService is pointless
_HOPELESS = {"Failed", "Deleting", "OutOfService", "UpdateRollbackFailed"}


@endpoints_app.command("list")
def endpoints_list(
    endpoint_url: EndpointUrl = DEFAULT_URL,
    name_contains: NameContains = None,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. InService.")] = None,
    as_json: AsJson = False,
) -> None:
    """List endpoints with their status and instance counts."""
    from botocore.exceptions import ClientError

    params = name_filter(name_contains) | ({"StatusEquals": status} if status else {})
    with connected(endpoint_url) as api:
        endpoints = api.collect("list_endpoints", "Endpoints", **params)
        if as_json:
            console.print_json({"Endpoints": endpoints})
            return
        counts: dict[str, tuple[int, int] | None] = {}
        for endpoint in endpoints:  # ListEndpoints has no counts; one describe each
            try:
                variants = api.sagemaker.describe_endpoint(EndpointName=endpoint["EndpointName"])[
                    "ProductionVariants"
                ]
            except ClientError:  # deleted since the listing
                counts[endpoint["EndpointName"]] = None
                continue
            counts[endpoint["EndpointName"]] = (
                sum(v.get("CurrentInstanceCount", 0) for v in variants),
                sum(v.get("DesiredInstanceCount", 0) for v in variants),
            )
    console.out.print(console.endpoints_table(endpoints, counts))


@endpoints_app.command("describe")
def endpoints_describe(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Show an endpoint's status, failure reason and variants."""
    from botocore.exceptions import ClientError

    with connected(endpoint_url) as api:
        endpoint = api.sagemaker.describe_endpoint(EndpointName=name)
        if as_json:
            console.print_json(endpoint)
            return
        try:  # for the instance types, which DescribeEndpoint leaves out
            config = api.sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
        except ClientError:
            config = None
    console.describe_endpoint(endpoint, config)


@endpoints_app.command("wait")
def endpoints_wait(
    name: str,
    endpoint_url: EndpointUrl = DEFAULT_URL,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 0.5,
) -> None:
    """Wait until an endpoint is InService; exit 1 with the reason if it fails or times out,
    so scripts can chain `modelhost endpoints wait X && ...`."""
    started = time.monotonic()
    with connected(endpoint_url) as api, console.waiting(name) as report:
        while True:
            endpoint = api.sagemaker.describe_endpoint(EndpointName=name)
            state = endpoint["EndpointStatus"]
            report(state)
            if state == "InService" or state in _HOPELESS or time.monotonic() - started > timeout:
                break
            time.sleep(interval)
    elapsed = time.monotonic() - started
    if state != "InService":
        raise wait_failed(name, state, endpoint, _HOPELESS, timeout)
    console.out.print(f"{name} is [green]InService[/] ({elapsed:.1f}s)", highlight=False)


@endpoints_app.command("delete")
def endpoints_delete(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Delete an endpoint (its config and model stay, as in SageMaker)."""
    with connected(endpoint_url) as api:
        api.sagemaker.delete_endpoint(EndpointName=name)
    console.out.print(f"deleting {name}")


@endpoints_app.command("logs")
def endpoints_logs(
    name: str,
    endpoint_url: EndpointUrl = DEFAULT_URL,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    variant: Annotated[str | None, typer.Option(help="Only this variant's instances.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only lines from this long ago (30s, 10m, 2h, 1d) or since this ISO 8601 "
            "time. [default: the whole log]"
        ),
    ] = None,
) -> None:
    """Print the log of every instance of an endpoint (CloudWatch Logs group
    /aws/sagemaker/Endpoints/NAME), oldest first, one line per event: time, stream
    (VARIANT/INSTANCE-ID), message."""
    from modelhost.cli import logs

    start = logs.since_ms(since)
    with connected(endpoint_url) as api:
        api.sagemaker.describe_endpoint(EndpointName=name)  # a one-line error for a typo
        logs.show(api.logs, name, variant, start, follow)


@endpoints_app.command("async-requests")
def endpoints_async_requests(
    name: str,
    endpoint_url: EndpointUrl = DEFAULT_URL,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="queued, running, failed or succeeded; repeat for several (default: all but "
            "succeeded)."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show an asynchronous endpoint's backlog, in-flight and failed requests."""
    from urllib.parse import urlencode

    from modelhost.cli import control

    with connected(endpoint_url) as api:
        answer = control.get(
            api.url,
            f"/endpoints/{name}/async-requests",
            urlencode([("state", s) for s in state or []]),
        )
    if as_json:
        console.print_json(answer)
    else:
        console.out.print(console.async_requests_table(answer))


@endpoints_app.command("invoke")
def endpoints_invoke(
    name: str,
    endpoint_url: EndpointUrl = DEFAULT_URL,
    body: Annotated[str | None, typer.Option(help="Request body, literally.")] = None,
    body_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Read the request body from this file."),
    ] = None,
    content_type: Annotated[str, typer.Option(help="Content-Type of the body.")] = "text/csv",
    accept: Annotated[str | None, typer.Option(help="Wanted response type.")] = None,
    custom_attributes: Annotated[str | None, typer.Option(help="Passed to the model.")] = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="InvokeEndpointWithResponseStream: print each part of the answer "
            "as the model produces it.",
        ),
    ] = False,
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
    with connected(endpoint_url) as api:
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
    console.err.print(
        f"[dim]variant: {response.get('InvokedProductionVariant', '-')}  "
        f"content-type: {response.get('ContentType', '-')}[/]",
        soft_wrap=True,
    )


@endpoints_app.command("invoke-async")
def endpoints_invoke_async(
    name: str,
    input_location: Annotated[
        str, typer.Option(help="s3:// URI of the request body, already in the object store.")
    ],
    endpoint_url: EndpointUrl = DEFAULT_URL,
    content_type: Annotated[str, typer.Option(help="Content-Type of the body.")] = "text/csv",
    accept: Annotated[str | None, typer.Option(help="Wanted response type.")] = None,
    inference_id: Annotated[str | None, typer.Option(help="Your id for the request.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result and print it.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 300,
) -> None:
    """InvokeEndpointAsync: queue one request; prints where its result (or failure)
    will appear, and with --wait the result itself."""
    params: dict[str, Any] = {
        "EndpointName": name,
        "InputLocation": input_location,
        "ContentType": content_type,
    }
    if accept:
        params["Accept"] = accept
    if inference_id:
        params["InferenceId"] = inference_id
    with connected(endpoint_url) as api:
        answer = api.runtime.invoke_endpoint_async(**params)
        console.out.print(f"output:  {answer['OutputLocation']}", highlight=False, soft_wrap=True)
        if answer.get("FailureLocation"):
            console.out.print(
                f"failure: {answer['FailureLocation']}", highlight=False, soft_wrap=True
            )
        if not wait:
            return
        result = _await_object(api, answer, timeout)
    sys.stdout.buffer.write(result if result.endswith(b"\n") else result + b"\n")
    sys.stdout.flush()


def _await_object(api: Any, answer: dict[str, Any], timeout: float) -> bytes:
    """The result object's bytes once it exists; exit 1 with the failure document, or on
    time out."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout
    with console.waiting("result") as report:
        while time.monotonic() < deadline:
            for key, failed in (("OutputLocation", False), ("FailureLocation", True)):
                location = answer.get(key)
                if not location:
                    continue
                bucket, _, object_key = location.removeprefix("s3://").partition("/")
                try:
                    body: bytes = api.s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
                except ClientError:
                    continue
                if failed:
                    console.error(f"the request failed: {body.decode(errors='replace')}")
                    raise typer.Exit(1)
                return body
            report("queued or running")
            time.sleep(0.5)
    console.error(f"no result after {timeout:g}s; it will appear at {answer['OutputLocation']}")
    raise typer.Exit(1)
