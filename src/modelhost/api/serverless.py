"""Serverless variants on the control plane: what a ServerlessConfig may say (how it shows
in an endpoint's desired state and in DescribeEndpoint is `modelhost.domain.endpoints`).

botocore's model already bounds MemorySizeInMB (1024 to 6144) and MaxConcurrency (1 to 200);
the rules it cannot express — 1 GB steps, provisioned concurrency within the maximum, no
instance settings next to a ServerlessConfig, one variant per serverless endpoint — are
SageMaker's own and are checked here.
"""

from __future__ import annotations

from typing import Any

from modelhost.domain.endpoints import is_serverless
from modelhost.errors import ValidationError

MEMORY_STEP_MB = 1024
#: Instance settings that make no sense for a serverless variant.
_INSTANCE_KEYS = (
    "InstanceType",
    "InitialInstanceCount",
    "AcceleratorType",
    "InstancePools",
    "ManagedInstanceScaling",
    "VolumeSizeInGB",
)
#: Endpoint-config features SageMaker serverless endpoints do not support.
_UNSUPPORTED = {
    "DataCaptureConfig": "data capture",
    "VpcConfig": "VPC configuration",
    "EnableNetworkIsolation": "network isolation",
}


def check_serverless_variant(index: int, variant: dict[str, Any]) -> None:
    """`index` is the variant's 1-based position, as AWS's messages number members."""
    config = variant["ServerlessConfig"]
    at = f"productionVariants.{index}.member.serverlessConfig"
    present = [key for key in _INSTANCE_KEYS if key in variant]
    if present:
        raise ValidationError(
            f"Variant {variant['VariantName']}: {' and '.join(present)} cannot be specified "
            "together with ServerlessConfig; a variant is either instance-based or serverless."
        )
    memory = config["MemorySizeInMB"]
    if memory % MEMORY_STEP_MB:
        allowed = ", ".join(str(MEMORY_STEP_MB * n) for n in range(1, 7))
        raise ValidationError(
            f"1 validation error detected: Value '{memory}' at '{at}.memorySizeInMB' failed "
            f"to satisfy constraint: Member must be one of [{allowed}] (1 GB increments)"
        )
    _check_provisioned(variant["VariantName"], config)


def _check_provisioned(variant: str, config: dict[str, Any]) -> None:
    provisioned = config.get("ProvisionedConcurrency")
    if provisioned is not None and provisioned > config["MaxConcurrency"]:
        raise ValidationError(
            f"Variant {variant}: ProvisionedConcurrency ({provisioned}) should be less than "
            f"or equal to MaxConcurrency ({config['MaxConcurrency']})."
        )


def check_serverless_config(params: dict[str, Any], variants: list[dict[str, Any]]) -> None:
    """Rules for the endpoint config as a whole once a variant is serverless."""
    if not any(is_serverless(v) for v in variants):
        return
    if len(variants) > 1:
        raise ValidationError(
            "Serverless endpoints support a single production variant; this endpoint "
            f"config has {len(variants)}."
        )
    for key, what in _UNSUPPORTED.items():
        if params.get(key):
            raise ValidationError(f"Serverless endpoints do not support {what} ({key}).")


def check_capacity_update(item: dict[str, Any], capacity: dict[str, Any]) -> None:
    """UpdateEndpointWeightsAndCapacities: instance counts for instance variants,
    ServerlessUpdateConfig for serverless ones, and the concurrency rule after the update."""
    variant = item["VariantName"]
    if "serverless" not in capacity:
        if "ServerlessUpdateConfig" in item:
            raise ValidationError(
                f"Variant {variant} is not serverless; ServerlessUpdateConfig does not apply."
            )
        return
    if "DesiredInstanceCount" in item:
        raise ValidationError(
            f"Variant {variant} is serverless; update its concurrency with "
            "ServerlessUpdateConfig instead of DesiredInstanceCount."
        )
    _check_provisioned(
        variant, {**capacity["serverless"], **item.get("ServerlessUpdateConfig", {})}
    )
