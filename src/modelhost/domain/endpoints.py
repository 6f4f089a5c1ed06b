"""An endpoint's desired state as the API records it and the controllers deploy it.

`_desired` (in the endpoint record) holds the config and models as they were when the call
was made and a `capacity` per variant: `{"weight", "count"}` for an instance variant, and
`{"weight", "count": 0, "serverless": ServerlessConfig}` for a serverless one. The API
writes it; the endpoint and serverless controllers read it and show what runs with
`deployed_fields`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modelhost.config import Settings
from modelhost.domain.containers import containers_of


def is_serverless(variant: dict[str, Any]) -> bool:
    return "ServerlessConfig" in variant


def instance_bounds(config: dict[str, Any], settings: Settings) -> tuple[int, int]:
    """How many instances a serverless variant keeps warm and may run at most. An instance
    serves `serverless_instance_concurrency` requests at once; provisioned concurrency is
    kept warm in instances of that size."""
    per_instance = settings.serverless_instance_concurrency
    most = min(
        math.ceil(config["MaxConcurrency"] / per_instance), settings.serverless_max_instances
    )
    warm = min(math.ceil(config.get("ProvisionedConcurrency", 0) / per_instance), most)
    return warm, most


def serverless_summary(capacity: dict[str, Any], running: bool) -> dict[str, Any]:
    """DescribeEndpoint's CurrentServerlessConfig (once it runs) and DesiredServerlessConfig,
    in place of instance counts."""
    desired = capacity["serverless"]
    fields = {"DesiredServerlessConfig": desired}
    if running:
        fields["CurrentServerlessConfig"] = desired
    return fields


def deployed_fields(
    desired: dict[str, Any], current: Mapping[str, tuple[float, int]] | None = None
) -> dict[str, Any]:
    """What DescribeEndpoint shows of the deployment: its ProductionVariants and the
    config's AsyncInferenceConfig. `current` maps a variant to the weight and healthy
    instance count it runs with now; None until the controller has taken the endpoint up
    (then images are not resolved yet and nothing runs)."""
    fields: dict[str, Any] = {"ProductionVariants": _variant_summaries(desired, current)}
    shadows = desired["config"].get("ShadowProductionVariants")
    if shadows:
        fields["ShadowProductionVariants"] = [
            _shadow_summary(desired, variant, current) for variant in shadows
        ]
    if "AsyncInferenceConfig" in desired["config"]:
        fields["AsyncInferenceConfig"] = desired["config"]["AsyncInferenceConfig"]
    if "DataCaptureConfig" in desired["config"]:
        capture = desired["config"]["DataCaptureConfig"]
        enabled = capture.get("EnableCapture", True)
        fields["DataCaptureConfig"] = {
            "EnableCapture": enabled,
            "CaptureStatus": "Started" if enabled and current is not None else "Stopped",
            "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
            "DestinationS3Uri": capture["DestinationS3Uri"],
        }
    return fields


def _shadow_summary(
    desired: dict[str, Any],
    variant: dict[str, Any],
    current: Mapping[str, tuple[float, int]] | None,
) -> dict[str, Any]:
    image = desired["models"][variant["ModelName"]]["PrimaryContainer"]["Image"]
    weight = variant["InitialVariantWeight"]
    count = (current or {}).get(variant["VariantName"], (weight, 0))[1]
    return {
        "VariantName": variant["VariantName"],
        "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image}]
        if current is not None
        else [{"SpecifiedImage": image}],
        "CurrentWeight": weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": count,
        "DesiredInstanceCount": variant["InitialInstanceCount"],
    }


def _variant_summaries(
    desired: dict[str, Any], current: Mapping[str, tuple[float, int]] | None
) -> list[dict[str, Any]]:
    summaries = []
    for variant in desired["config"]["ProductionVariants"]:
        capacity = desired["capacity"][variant["VariantName"]]
        hosts_components = "ModelName" not in variant
        images = (
            []
            if hosts_components
            else [c["Image"] for c in containers_of(desired["models"][variant["ModelName"]])]
        )
        weight, count = (current or {}).get(variant["VariantName"], (capacity["weight"], 0))
        if hosts_components and current is not None:
            # Its instances are capacity that inference components' copies are packed
            # onto; they hold no model of their own to wait for.
            count = capacity["count"]
        summary = {
            "VariantName": variant["VariantName"],
            # One per container, as SageMaker lists a multi-container model's images.
            "DeployedImages": [
                {"SpecifiedImage": image}
                if current is None
                else {"SpecifiedImage": image, "ResolvedImage": image}
                for image in images
            ],
            "CurrentWeight": weight,
            "DesiredWeight": capacity["weight"],
        }
        if "serverless" in capacity:
            summary.update(serverless_summary(capacity, running=current is not None))
        else:
            summary.update(CurrentInstanceCount=count, DesiredInstanceCount=capacity["count"])
        if "ManagedInstanceScaling" in variant:
            summary["ManagedInstanceScaling"] = variant["ManagedInstanceScaling"]
        summaries.append(summary)
    return summaries
