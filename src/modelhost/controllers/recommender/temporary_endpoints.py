"""The temporary endpoints a recommendation job measures its candidates on, made and
removed through the same control-plane operations (and validation) a client calls. Each
is listed in the job's `_endpoints` while it exists, so a restarted server deletes what an
interrupted run left. The job measures an endpoint's instances in place, so it claims the
endpoint's lease as it creates it: with several servers on one state store, the instances
then start on the job's server, not on whichever server's controller saw it first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from modelhost import api
from modelhost.config import Settings
from modelhost.controllers.recommender.candidates import CandidateFailed
from modelhost.domain import kinds
from modelhost.storage import LoopStore, Ownership, lease

JOB_TAG = "modelhost:recommendation-job"


class TemporaryEndpoints:
    def __init__(
        self, settings: Settings, store: LoopStore, context: api.Context, ownership: Ownership
    ) -> None:
        self.settings = settings
        self.store = store
        self.context = context
        self.ownership = ownership

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """A control-plane operation through the same path (and validation) as a client's."""
        status, body = await asyncio.to_thread(
            api.handle, self.context, f"SageMaker.{operation}", orjson.dumps(params)
        )
        answer = orjson.loads(body)
        if status != 200:
            raise CandidateFailed(f"{operation}: {answer.get('message', answer)}")
        return dict(answer)

    async def track(self, job: str, endpoint: str) -> None:
        """List the endpoint in the job before it exists, so a restart finds it."""
        await self.store.modify(
            kinds.RECOMMENDATION_JOB,
            job,
            lambda r: {**r, "_endpoints": sorted(set(r["_endpoints"]) | {endpoint})},
        )

    async def deploy(self, job: dict[str, Any], endpoint: str, candidate: dict[str, Any]) -> None:
        """A job on a model package (`ModelPackageVersionArn`) measures a temporary model
        running the package's container (resolved when the job was created), named as
        the endpoint and removed with it."""
        model = job["InputConfig"].get("ModelName")
        if model is None:
            model = endpoint
            await self._call(
                "CreateModel",
                ModelName=model,
                ExecutionRoleArn=job["RoleArn"],
                PrimaryContainer=job["_plan"]["container"],
                Tags=[{"Key": JOB_TAG, "Value": job["JobName"]}],
            )
        variant = {"VariantName": "AllTraffic", "ModelName": model, **candidate}
        await self._call(
            "CreateEndpointConfig", EndpointConfigName=endpoint, ProductionVariants=[variant]
        )
        await self._call(
            "CreateEndpoint",
            EndpointName=endpoint,
            EndpointConfigName=endpoint,
            Tags=[{"Key": JOB_TAG, "Value": job["JobName"]}],
        )
        # This server's endpoint controller was woken by the creation and claims the lease
        # too; another server only sees the endpoint at its next pass.
        if not await self.ownership.claim([lease(kinds.ENDPOINT, endpoint)]):
            raise CandidateFailed("the temporary endpoint was taken by another modelhost server")
        deadline = time.monotonic() + self.settings.startup_timeout_s + 60
        while time.monotonic() < deadline:
            state = await self.store.get(kinds.ENDPOINT, endpoint)
            if state is None or state["EndpointStatus"] == "Failed":
                reason = (state or {}).get("FailureReason", "the endpoint disappeared")
                raise CandidateFailed(f"temporary endpoint failed: {reason}")
            if state["EndpointStatus"] == "InService":
                return
            await asyncio.sleep(0.2)
        raise CandidateFailed("temporary endpoint did not reach InService in time")

    async def remove(self, job: str, endpoint: str) -> None:
        """Delete the endpoint and its config and wait until its instances are gone."""
        with contextlib.suppress(CandidateFailed):
            await self._call("DeleteEndpoint", EndpointName=endpoint)
        deadline = time.monotonic() + 120
        while (
            await self.store.get(kinds.ENDPOINT, endpoint)
        ) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        with contextlib.suppress(CandidateFailed):
            await self._call("DeleteEndpointConfig", EndpointConfigName=endpoint)
        model = await self.store.get(kinds.MODEL, endpoint)
        if model is not None and (await self.store.tags(model["ModelArn"])).get(JOB_TAG) == job:
            with contextlib.suppress(CandidateFailed):
                await self._call("DeleteModel", ModelName=endpoint)
        await self.store.modify(
            kinds.RECOMMENDATION_JOB,
            job,
            lambda r: {**r, "_endpoints": [e for e in r["_endpoints"] if e != endpoint]},
        )

    async def clean_up(self, job: str) -> None:
        """Remove every temporary endpoint the job still lists."""
        record = await self.store.get(kinds.RECOMMENDATION_JOB, job)
        for endpoint in (record or {}).get("_endpoints", []):
            await self.remove(job, endpoint)
