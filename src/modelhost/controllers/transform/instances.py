"""The instances a transform job runs on: the model server of its model, like an
endpoint's, started with SageMaker's batch environment, metered while they run, and
always stopped when the job ends, however it ends."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from typing import Any

import orjson

from modelhost import metrics
from modelhost.config import Settings
from modelhost.controllers.deployment import (
    StartFailed,
    charge,
    instance_spec,
    prepare_model,
    start_all,
)
from modelhost.controllers.transform.job import VARIANT, JobFailed
from modelhost.instances import Instance, InstanceBackend, InstanceClient, InstanceUnreachable
from modelhost.storage import ObjectStore


class JobInstances:
    """Every running job's instances, by job name."""

    def __init__(
        self,
        settings: Settings,
        objects: ObjectStore,
        backend: InstanceBackend,
        client: InstanceClient,
    ) -> None:
        self.settings = settings
        self.objects = objects
        self.backend = backend
        self.client = client
        self._running: dict[str, list[Instance]] = {}
        self._counter = itertools.count(1)
        self._metered_at = time.monotonic()

    async def start(self, record: dict[str, Any]) -> list[Instance]:
        name = record["TransformJobName"]
        model = record["_model"]
        resources = record["TransformResources"]
        try:
            model_dir = await prepare_model(self.settings, self.objects, model)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise JobFailed(f"Could not prepare model {model['ModelName']}: {exc}") from None
        environment = {
            **record.get("Environment", {}),
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(record["MaxPayloadInMB"]),
            "SAGEMAKER_BATCH_STRATEGY": record["BatchStrategy"].upper(),
        }
        if "MaxConcurrentTransforms" in record:
            environment["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(
                record["MaxConcurrentTransforms"]
            )
        variant = {"VariantName": VARIANT, "InstanceType": resources["InstanceType"]}
        specs = []
        for _ in range(resources["InstanceCount"]):
            spec = instance_spec(
                self.settings, name, variant, model, model_dir, next(self._counter)
            )
            specs.append(dataclasses.replace(spec, environment={**spec.environment, **environment}))
        started: list[Instance] = []
        self._running[name] = started
        try:
            instances = await start_all(
                self.backend, specs, self.settings.startup_timeout_s, started
            )
        except StartFailed as exc:
            raise JobFailed(str(exc)) from None
        metrics.INSTANCES.labels(name, VARIANT).set(len(instances))
        return instances

    async def container_concurrency(self, instance: Instance) -> int:
        """Without MaxConcurrentTransforms, ask the container (/execution-parameters), as
        SageMaker does; 1 if it does not say."""
        try:
            response = await self.client.request(
                instance.address, b"GET", b"/execution-parameters", [], b"", 5.0
            )
            value = int(orjson.loads(response.body).get("MaxConcurrentTransforms", 1))
        except (
            InstanceUnreachable,
            TimeoutError,
            orjson.JSONDecodeError,
            ValueError,
            TypeError,
            AttributeError,
        ):
            return 1
        return max(1, value) if response.status == 200 else 1

    async def stop(self, name: str) -> None:
        self.meter()
        instances = self._running.pop(name, [])
        for instance in instances:
            self.client.forget(instance.address)
        await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        metrics.INSTANCES.labels(name, VARIANT).set(0)

    def meter(self) -> None:
        """Add the time since the last call to every running job instance's meter."""
        now = time.monotonic()
        elapsed, self._metered_at = now - self._metered_at, now
        for name, instances in self._running.items():
            for instance in instances:
                charge(name, VARIANT, instance, elapsed)
