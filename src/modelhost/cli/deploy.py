"""`modelhost deploy PATH-or-s3-URI --name N`: a model on an endpoint in one command.

Packs a model file or folder into `model.tar.gz` (packing.py), puts it in the object store
through the S3 API, creates a Model and an EndpointConfig named after the endpoint and the
time, and creates the endpoint (or, with `--update`, moves an existing one to the new
config: SageMaker's blue/green update, the old instances serving until the new ones are
ready), then waits for InService with progress and prints how to invoke it.

Each deploy makes a new model and config rather than replacing them, so an update never
changes what the running instances were started from, and the previous pair stays for a
roll back (`modelhost models list`).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from modelhost.cli import console
from modelhost.cli._shared import DEFAULT_URL, Api, EndpointUrl, connected, wait_failed
from modelhost.cli.packing import PackingError, pack

_HOPELESS = {"Failed", "Deleting", "OutOfService", "UpdateRollbackFailed"}
_ROLE = "arn:aws:iam::000000000000:role/modelhost-deploy"


def _stamped(name: str) -> str:
    """`NAME-YYYYmmdd-HHMMSS-fff`, within SageMaker's 63 characters."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return f"{name[: 63 - len(stamp) - 1]}-{stamp}"


def _upload(api: Api, source: Path, bucket: str, key: str) -> tuple[str, str, str]:
    """Pack and upload; the s3:// URI, the image and the content type to suggest."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    with tempfile.TemporaryDirectory(prefix="modelhost-deploy-") as scratch:
        try:
            packed = pack(source, Path(scratch) / "model.tar.gz")
        except PackingError as exc:
            console.error(str(exc))
            raise typer.Exit(2) from None
        size = packed.archive.stat().st_size
        console.err.print(f"uploading {size:,} bytes to s3://{bucket}/{key}", highlight=False)
        try:
            try:
                api.s3.head_bucket(Bucket=bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                api.s3.create_bucket(Bucket=bucket)
            api.s3.upload_file(str(packed.archive), bucket, key)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            console.error(
                f"could not put the model in the object store at {api.s3.meta.endpoint_url} "
                f"({exc}); point AWS_ENDPOINT_URL_S3 at the S3 endpoint the server reads, or "
                "upload model.tar.gz yourself and deploy its s3:// URI"
            )
            raise typer.Exit(1) from None
    return f"s3://{bucket}/{key}", packed.image, packed.content_type


def _variant(model: str, instance_type: str, count: int, serverless: int | None) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": model}
    if serverless is not None:
        variant["ServerlessConfig"] = {"MemorySizeInMB": serverless, "MaxConcurrency": 10}
    else:
        variant.update(InstanceType=instance_type, InitialInstanceCount=count)
    return variant


def _wait(api: Api, name: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    with console.waiting(name) as report:
        while True:
            endpoint = api.sagemaker.describe_endpoint(EndpointName=name)
            state = endpoint["EndpointStatus"]
            report(state)
            if state == "InService" or state in _HOPELESS or time.monotonic() - started > timeout:
                break
            time.sleep(0.5)
    if state != "InService":
        raise wait_failed(name, state, endpoint, _HOPELESS, timeout)
    return dict(endpoint)


def deploy(
    source: Annotated[
        str, typer.Argument(help="A model file or folder, or the s3:// URI of a model.tar.gz.")
    ],
    name: Annotated[str, typer.Option("--name", help="The endpoint's name.")],
    endpoint_url: EndpointUrl = DEFAULT_URL,
    instance_type: Annotated[str, typer.Option(help="Instance type of each instance.")] = (
        "ml.m5.large"
    ),
    count: Annotated[int, typer.Option(min=1, help="Number of instances.")] = 1,
    serverless: Annotated[
        int | None,
        typer.Option(
            metavar="MEMORY_MB",
            help="A serverless endpoint with this much memory (1024-6144 MB), instead of "
            "instances.",
        ),
    ] = None,
    asynchronous: Annotated[
        bool,
        typer.Option(
            "--async",
            help="An asynchronous endpoint (InvokeEndpointAsync); results go to "
            "s3://BUCKET/NAME/async/.",
        ),
    ] = False,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Move an existing endpoint to the new model (blue/green: the old "
            "instances serve until the new ones are ready).",
        ),
    ] = False,
    image: Annotated[
        str | None,
        typer.Option(help="Image to run. [default: from the files: sklearn, onnx or python]"),
    ] = None,
    bucket: Annotated[str, typer.Option(help="Bucket the artifacts are put in.")] = "models",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for InService.")] = 600,
) -> None:
    """Pack, upload and deploy a model in one command, then wait until it serves."""
    from botocore.exceptions import ClientError

    if serverless is not None and asynchronous:
        console.error("--serverless and --async cannot be combined")
        raise typer.Exit(2)
    stamped = _stamped(name)
    with connected(endpoint_url) as api:
        try:
            api.sagemaker.describe_endpoint(EndpointName=name)
            exists = True
        except ClientError:
            exists = False
        if exists != update:
            console.error(
                f"endpoint {name} already exists; pass --update to move it to the new model"
                if exists
                else f"endpoint {name} does not exist; deploy it without --update first"
            )
            raise typer.Exit(1)
        if source.startswith("s3://"):
            model_url, guessed, content_type = source, "modelhost/sklearn", "text/csv"
        else:
            model_url, guessed, content_type = _upload(
                api, Path(source), bucket, f"{name}/{stamped}/model.tar.gz"
            )
        api.sagemaker.create_model(
            ModelName=stamped,
            ExecutionRoleArn=_ROLE,
            PrimaryContainer={"Image": image or guessed, "ModelDataUrl": model_url},
        )
        config: dict[str, Any] = {
            "EndpointConfigName": stamped,
            "ProductionVariants": [_variant(stamped, instance_type, count, serverless)],
        }
        if asynchronous:
            config["AsyncInferenceConfig"] = {
                "OutputConfig": {
                    "S3OutputPath": f"s3://{bucket}/{name}/async/out",
                    "S3FailurePath": f"s3://{bucket}/{name}/async/failed",
                }
            }
        api.sagemaker.create_endpoint_config(**config)
        if update:
            api.sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=stamped)
            # the update is under way once the endpoint leaves InService
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                state = api.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
                if state != "InService":
                    break
                time.sleep(0.1)
        else:
            api.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=stamped)
        endpoint = _wait(api, name, timeout)
        if endpoint.get("EndpointConfigName") != stamped:
            console.error(
                f"{name} is InService but on {endpoint.get('EndpointConfigName')}: "
                f"the update was rolled back ({endpoint.get('FailureReason') or 'no reason'})"
            )
            raise typer.Exit(1)
    _print_usage(name, endpoint_url, content_type, asynchronous, bucket)


def _print_usage(name: str, url: str, content_type: str, asynchronous: bool, bucket: str) -> None:
    body = "5.1,3.5,1.4,0.2" if content_type == "text/csv" else '{"inputs": [[5.1, 3.5]]}'
    out = console.out
    out.print(f"{name} is [green]InService[/] at {url}", highlight=False)
    if asynchronous:
        out.print(
            "invoke it (the input is an object in the store; the result appears under "
            f"s3://{bucket}/{name}/async/out):",
            highlight=False,
        )
        out.print(
            f"  modelhost endpoints invoke-async {name} --input-location s3://BUCKET/KEY "
            f"--content-type {content_type} --endpoint-url {url}",
            highlight=False,
            soft_wrap=True,
        )
        return
    out.print("invoke it:", highlight=False)
    out.print(
        f"  modelhost endpoints invoke {name} --content-type {content_type} "
        f"--body '{body}' --endpoint-url {url}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f'  boto3.client("sagemaker-runtime", endpoint_url="{url}").invoke_endpoint(\n'
        f'      EndpointName="{name}", ContentType="{content_type}", Body=...)',
        highlight=False,
        soft_wrap=True,
    )
