"""`modelhost models` and `modelhost endpoint-configs`: what an endpoint is made of."""

from __future__ import annotations

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
