"""`modelhost models` and `modelhost endpoint-configs`: what an endpoint is made of."""

from __future__ import annotations

from typing import Annotated

import typer

from modelhost.cli import console
from modelhost.cli._shared import (
    DEFAULT_URL,
    AsJson,
    EndpointUrl,
    NameContains,
    connected,
    name_filter,
    print_listing,
)

models_app = typer.Typer(help="Models: artifacts + image.", no_args_is_help=True)
configs_app = typer.Typer(
    help="Endpoint configs: the variants an endpoint runs.", no_args_is_help=True
)


@models_app.command("list")
def models_list(
    endpoint_url: EndpointUrl = DEFAULT_URL,
    name_contains: NameContains = None,
    as_json: AsJson = False,
) -> None:
    """List models, newest first."""
    print_listing(
        endpoint_url,
        "list_models",
        "Models",
        console.models_table,
        as_json,
        **name_filter(name_contains),
    )


@models_app.command("describe")
def models_describe(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Show a model's containers, artifacts and environment."""
    with connected(endpoint_url) as api:
        model = api.sagemaker.describe_model(ModelName=name)
    if as_json:
        console.print_json(model)
    else:
        console.describe_model(model)


@configs_app.command("list")
def configs_list(
    endpoint_url: EndpointUrl = DEFAULT_URL,
    name_contains: NameContains = None,
    as_json: AsJson = False,
) -> None:
    """List endpoint configs, newest first."""
    print_listing(
        endpoint_url,
        "list_endpoint_configs",
        "EndpointConfigs",
        console.endpoint_configs_table,
        as_json,
        **name_filter(name_contains),
    )


@configs_app.command("describe")
def configs_describe(
    name: str, endpoint_url: EndpointUrl = DEFAULT_URL, as_json: AsJson = False
) -> None:
    """Show an endpoint config's variants."""
    with connected(endpoint_url) as api:
        config = api.sagemaker.describe_endpoint_config(EndpointConfigName=name)
    if as_json:
        console.print_json(config)
    else:
        console.describe_endpoint_config(config)


@models_app.command("create")
def models_create(
    name: str,
    model_data_url: Annotated[
        str, typer.Option(help="s3:// URI of the model.tar.gz (see `modelhost deploy`).")
    ],
    image: Annotated[str, typer.Option(help="Image to run.")] = "modelhost/sklearn",
    env: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE for the container; repeatable.")
    ] = None,
    endpoint_url: EndpointUrl = DEFAULT_URL,
) -> None:
    """CreateModel: an image and its artifacts."""
    environment = dict(item.partition("=")[::2] for item in env or [])
    if any(not key for key in environment):
        console.error("--env takes KEY=VALUE")
        raise typer.Exit(2)
    container = {"Image": image, "ModelDataUrl": model_data_url}
    if environment:
        container["Environment"] = environment  # type: ignore[assignment]
    with connected(endpoint_url) as api:
        arn = api.sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn="arn:aws:iam::000000000000:role/modelhost-cli",
            PrimaryContainer=container,
        )["ModelArn"]
    console.out.print(arn, highlight=False, soft_wrap=True)


@models_app.command("delete")
def models_delete(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """DeleteModel (endpoints already running it keep running)."""
    with connected(endpoint_url) as api:
        api.sagemaker.delete_model(ModelName=name)
    console.out.print(f"deleted model {name}", highlight=False)


@configs_app.command("create")
def configs_create(
    name: str,
    model: Annotated[str, typer.Option(help="The model the variant runs.")],
    instance_type: Annotated[str, typer.Option(help="Instance type.")] = "ml.m5.large",
    count: Annotated[int, typer.Option(min=1, help="Number of instances.")] = 1,
    serverless: Annotated[
        int | None,
        typer.Option(metavar="MEMORY_MB", help="Serverless with this much memory instead."),
    ] = None,
    endpoint_url: EndpointUrl = DEFAULT_URL,
) -> None:
    """CreateEndpointConfig with one variant, AllTraffic."""
    variant: dict[str, object] = {"VariantName": "AllTraffic", "ModelName": model}
    if serverless is not None:
        variant["ServerlessConfig"] = {"MemorySizeInMB": serverless, "MaxConcurrency": 10}
    else:
        variant.update(InstanceType=instance_type, InitialInstanceCount=count)
    with connected(endpoint_url) as api:
        arn = api.sagemaker.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[variant]
        )["EndpointConfigArn"]
    console.out.print(arn, highlight=False, soft_wrap=True)


@configs_app.command("delete")
def configs_delete(name: str, endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """DeleteEndpointConfig (endpoints already running it keep running)."""
    with connected(endpoint_url) as api:
        api.sagemaker.delete_endpoint_config(EndpointConfigName=name)
    console.out.print(f"deleted endpoint config {name}", highlight=False)
