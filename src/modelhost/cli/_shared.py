"""What every client command shares: the options naming the server, boto3 clients for
it, and the one-line errors a user can act on."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from modelhost import defaults
from modelhost.cli import console

DEFAULT_URL = defaults.URL
REGION = defaults.REGION


def _server_url(url: str) -> str:
    """One line, not botocore's traceback, for an address without a scheme."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        console.error(
            f"the server address {url!r} (--endpoint-url / MODELHOST_URL) is not an "
            f"http:// or https:// URL; e.g. http://{url.partition('://')[2] or url}"
        )
        raise typer.Exit(2)
    return url


EndpointUrl = Annotated[
    str,
    typer.Option(
        "--endpoint-url",
        envvar="MODELHOST_URL",
        show_envvar=True,
        callback=_server_url,
        help="The modelhost server to talk to.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw API answer as JSON.")]
NameContains = Annotated[str | None, typer.Option(help="Only names containing this.")]


class Api:
    """boto3 clients for one server, built lazily: `models list` should not pay for a
    runtime client it never uses."""

    def __init__(self, url: str) -> None:
        # The server does not need real AWS credentials; skipping the EC2 metadata
        # lookup keeps a machine without any from stalling a second on every command
        # (boto3 clients and control calls look credentials up alike).
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        self.url = url
        self._clients: dict[str, Any] = {}

    def _client(self, service: str, endpoint_url: str | None = None, **config: Any) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            session = boto3.Session(region_name=REGION)
            dummy = (
                {}
                if session.get_credentials()
                else {"aws_access_key_id": "modelhost", "aws_secret_access_key": "modelhost"}
            )
            self._clients[service] = session.client(
                service,
                endpoint_url=endpoint_url or self.url,
                region_name=REGION,
                **dummy,
                # one attempt: a refused connection should be reported now, not after
                # botocore's back-off; reads wait long enough for a slow model.
                config=Config(
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=120,
                    **config,
                ),
            )
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @property
    def runtime(self) -> Any:
        return self._client("sagemaker-runtime")

    @property
    def logs(self) -> Any:
        """CloudWatch Logs, which the server serves for its instances' and jobs' logs."""
        return self._client("logs")

    @property
    def s3(self) -> Any:
        """The object store through the S3 API: the S3 endpoint configured the AWS way
        (`AWS_ENDPOINT_URL_S3`), else the server itself, which serves its embedded store
        on its own address."""
        given = os.environ.get("AWS_ENDPOINT_URL_S3") or None
        if given:
            return self._client("s3", given)
        # The server answers buckets in the path (`HOST/bucket/key`), whatever its name.
        return self._client("s3", None, s3={"addressing_style": "path"})

    def collect(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a List* call: a CLI listing that stops at page one silently lies."""
        pages = self.sagemaker.get_paginator(operation).paginate(**params)
        return [item for page in pages for item in page[key]]


@contextmanager
def connected(url: str) -> Iterator[Api]:
    """Turn the failures a user can cause or fix into one line and exit code 1."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        yield Api(url)
    except ClientError as exc:
        problem = exc.response.get("Error", {})
        console.error(f"{problem.get('Code', 'Unknown')}: {problem.get('Message', exc)}")
        raise typer.Exit(1) from None
    except EndpointConnectionError:
        console.error(
            f"no modelhost server at {url} (start one with `modelhost server`, "
            "or pass --endpoint-url / set MODELHOST_URL)"
        )
        raise typer.Exit(1) from None
    except BotoCoreError as exc:
        console.error(str(exc))
        raise typer.Exit(1) from None


def name_filter(name_contains: str | None) -> dict[str, Any]:
    return {"NameContains": name_contains} if name_contains else {}


def wait_failed(
    name: str, state: str, description: dict[str, Any], ended: set[str], timeout: float
) -> typer.Exit:
    """Report why a `wait` command gives up (the resource ended badly, or time ran out);
    raise the exit code it returns."""
    if state in ended:
        console.error(f"{name} is {state}: {description.get('FailureReason') or 'no reason given'}")
    else:
        console.error(f"{name} still {state} after {timeout:g}s")
    return typer.Exit(1)


def print_listing(
    endpoint_url: str,
    operation: str,
    key: str,
    table: Callable[[list[dict[str, Any]]], Any],
    as_json: bool,
    **params: Any,
) -> None:
    """Every page of a List* call: with --json the API's own document, else a table."""
    with connected(endpoint_url) as api:
        items = api.collect(operation, key, **params)
    if as_json:
        console.print_json({key: items})
    else:
        console.out.print(table(items))
