"""The inference recommender's job lifecycle: load tests a model on candidate instance
types and serverless configurations, one candidate after another.

For each candidate (one BENCHMARK step of the job) it deploys a temporary endpoint through
the same control-plane operations a user calls, so the instance runs exactly as a real one
would (held to its type's memory, BLAS threads at its vCPUs). It then drives it with the
job's traffic steps (closed-loop users, `modelhost.loadgen` in a child process), reading
the instances' CPU and memory with psutil, and keeps the highest throughput whose latency
meets the job's ModelLatencyThreshold. An instance candidate's model server is driven
directly; a serverless one through the router (its concurrency limit, cold starts and
scaling are part of what is measured), and its cost is the GB-seconds the router billed.
The temporary endpoint is deleted when the step ends, fails or is stopped.

Jobs live in the state store. A server that stops mid-job leaves the job IN_PROGRESS with
its temporary endpoints listed in `_endpoints`; on restart the job deletes those and
re-runs the steps that had not finished. With several servers on one state store, a job
runs on the one server that holds its lease (:mod:`modelhost.storage.ownership`), and so
do its temporary endpoints (it claims each one's lease as it creates it, since it measures
the instances in place); when that server dies, another takes the lease and resumes the
job the same way a restart does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelhost import api
from modelhost.auth import INTERNAL_TOKEN_HEADER
from modelhost.catalog import get_instance_type
from modelhost.config import Settings
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.controllers.recommender import scoring
from modelhost.controllers.recommender.candidates import (
    CandidateFailed,
    endpoint_name,
    failed_benchmark,
)
from modelhost.controllers.recommender.payloads import NoPayloads, sample_payloads
from modelhost.controllers.recommender.temporary_endpoints import TemporaryEndpoints
from modelhost.controllers.recommender.usage import Usage
from modelhost.domain import kinds
from modelhost.domain.failures import fit_failure_reason
from modelhost.domain.recommendations import candidate_label
from modelhost.instances import Instance, token_header
from modelhost.loadgen import LoadSpec, Phase, run_in_subprocess
from modelhost.router import Deployment, Invocation, Router, ServerlessPool
from modelhost.storage import LoopStore, ObjectStore, Ownership, StateStore, lease

log = logging.getLogger(__name__)

KIND = kinds.RECOMMENDATION_JOB
_ACTIVE = ("PENDING", "IN_PROGRESS", "STOPPING")


@dataclass(frozen=True)
class _Target:
    """Where a candidate's load goes, and how to read what it cost: the instances running
    now, and (serverless) the GB-seconds billed so far."""

    url: str
    headers: tuple[tuple[str, str], ...]
    instances: Callable[[], list[Instance]]
    billed_gb_seconds: Callable[[], float] | None = None


class RecommendationController(ReconcileLoop):
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        objects: ObjectStore,
        router: Router,
        context: api.Context,
        ownership: Ownership,
    ) -> None:
        super().__init__("recommender reconcile", 1.0)
        self.settings = settings
        # Awaited store calls: in a thread unless the store is a local file.
        self.store = LoopStore(store)
        self.objects = objects
        self.router = router
        self.context = context
        self.ownership = ownership
        ownership.on_lost(self._lost)
        self.endpoints = TemporaryEndpoints(settings, self.store, context, ownership)
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()  # jobs whose task was cancelled for a stop
        self._given_up: set[str] = set()  # jobs whose lease another server holds now
        self._shutting_down = False

    async def step(self) -> None:
        await self.reconcile()

    def _lost(self, name: str) -> None:
        """Another server holds the job now: stop here, leaving the job as it is (its new
        owner cleans up and resumes it)."""
        kind, _, job = name.partition(":")
        task = self._jobs.get(job) if kind == KIND else None
        if task is not None and not task.done():
            self._given_up.add(job)
            task.cancel()

    async def reconcile(self) -> None:
        records = [r for r in await self.store.list(KIND) if r["Status"] in _ACTIVE]
        mine = await self.ownership.claim(lease(KIND, r["JobName"]) for r in records)
        for record in records:
            name, status = record["JobName"], record["Status"]
            if lease(KIND, name) not in mine:
                continue
            task = self._jobs.get(name)
            running = task is not None and not task.done()
            if status in ("PENDING", "IN_PROGRESS") and not running:
                self._jobs[name] = asyncio.create_task(self._run_job(name), name=f"job:{name}")
            elif status == "STOPPING":
                if running:
                    assert task is not None
                    if task.get_name().startswith("job:") and name not in self._cancelled:
                        self._cancelled.add(name)
                        task.cancel()  # its handler cleans up and marks the job STOPPED
                else:
                    self._jobs[name] = asyncio.create_task(self._stop(name), name=f"stop:{name}")

    async def shutdown(self) -> None:
        """Leave jobs as they are: a restart resumes them (and deletes their endpoints)."""
        self._shutting_down = True
        await cancel_all(self._jobs.values())

    async def load_curves(self, name: str) -> dict[str, Any] | None:
        """Every traffic step's throughput and latency per candidate, for charts: the
        SageMaker shapes only carry the chosen point."""
        record = await self.store.get(KIND, name)
        if record is None:
            return None
        return {
            "JobName": name,
            "Status": record["Status"],
            "Latency": record["_plan"]["latency"],
            "Candidates": [
                {
                    "Candidate": step["_candidate"],
                    "Status": step["Status"],
                    "Points": step.get("_points", []),
                }
                for step in record["_steps"]
            ],
        }

    # --- one job ----------------------------------------------------------------------

    async def _update(self, name: str, **fields: Any) -> dict[str, Any] | None:
        """Set fields of a running job; None (and no change) once a stop was asked for,
        so the controller never writes over STOPPING."""

        def change(record: dict[str, Any]) -> dict[str, Any] | None:
            if record["Status"] not in ("PENDING", "IN_PROGRESS"):
                return None
            record.update(fields, LastModifiedTime=self.context.now())
            return record

        record = await self.store.modify(KIND, name, change)
        return (
            record
            if record is not None and all(record.get(k) == v for k, v in fields.items())
            else None
        )

    async def _update_step(self, name: str, index: int, **fields: Any) -> None:
        def change(record: dict[str, Any]) -> dict[str, Any]:
            record["_steps"][index].update(fields)
            record["LastModifiedTime"] = self.context.now()
            return record

        await self.store.modify(KIND, name, change)

    async def _run_job(self, name: str) -> None:
        try:
            await self.endpoints.clean_up(name)  # leftovers of a run a restart interrupted
            record = await self._update(name, Status="IN_PROGRESS")
            if record is None:
                return  # stopped meanwhile; the next reconcile finishes the stop
            payloads = await asyncio.to_thread(
                sample_payloads,
                self.objects,
                record["InputConfig"]["ContainerConfig"]["PayloadConfig"]["SamplePayloadUrl"],
            )
            for index, step in enumerate(record["_steps"]):
                if step["Status"] in ("COMPLETED", "FAILED"):
                    continue
                if _past(record["_plan"]):
                    await self._update_step(
                        name,
                        index,
                        Status="FAILED",
                        InferenceBenchmark=failed_benchmark(
                            name, index, step, "JobDurationInSeconds reached before this candidate"
                        ),
                    )
                    continue
                await self._update_step(name, index, Status="IN_PROGRESS")
                try:
                    benchmark, points = await self._benchmark(record, index, payloads)
                    await self._update_step(
                        name,
                        index,
                        Status="COMPLETED",
                        InferenceBenchmark=benchmark,
                        _points=points,
                    )
                except CandidateFailed as exc:
                    await self._update_step(
                        name,
                        index,
                        Status="FAILED",
                        InferenceBenchmark=failed_benchmark(
                            name, index, step, fit_failure_reason(str(exc))
                        ),
                    )
            await self._finish(name)
        except asyncio.CancelledError:
            if not self._shutting_down and name not in self._given_up:
                await asyncio.shield(self._stop(name))
            raise
        except Exception as exc:
            if isinstance(exc, NoPayloads):
                log.warning("recommendation job %s failed: %s", name, exc)
            else:
                log.exception("recommendation job %s failed", name)
            await self.endpoints.clean_up(name)
            await self._update(
                name,
                Status="FAILED",
                FailureReason=fit_failure_reason(str(exc)),
                CompletionTime=self.context.now(),
            )
            await self.ownership.release([lease(KIND, name)])
        finally:
            self._cancelled.discard(name)
            self._given_up.discard(name)

    async def _stop(self, name: str) -> None:
        await self.endpoints.clean_up(name)

        def change(record: dict[str, Any]) -> dict[str, Any]:
            for step in record["_steps"]:
                if step["Status"] in ("PENDING", "IN_PROGRESS"):
                    step["Status"] = "STOPPED"
            now = self.context.now()
            record.update(Status="STOPPED", LastModifiedTime=now, CompletionTime=now)
            return record

        await self.store.modify(KIND, name, change)
        await self.ownership.release([lease(KIND, name)])

    async def _finish(self, name: str) -> None:
        """Recommend every candidate that met the latency bound, cheapest per inference
        first; the job fails only when none did."""
        record = await self.store.get(KIND, name)
        assert record is not None
        recommendations = scoring.rank(name, record["_steps"])
        now = self.context.now()
        if recommendations:
            await self._update(
                name, Status="COMPLETED", CompletionTime=now, _recommendations=recommendations
            )
        else:
            reasons = "; ".join(
                f"{candidate_label(s['_candidate'])}: "
                f"{s.get('InferenceBenchmark', {}).get('FailureReason', s['Status'])}"
                for s in record["_steps"]
            )
            await self._update(
                name,
                Status="FAILED",
                CompletionTime=now,
                FailureReason=fit_failure_reason(
                    f"No candidate met the job's conditions. {reasons}"
                ),
            )
        await self.ownership.release([lease(KIND, name)])

    # --- one candidate ----------------------------------------------------------------

    async def _benchmark(
        self, record: dict[str, Any], index: int, payloads: tuple[bytes, ...]
    ) -> tuple[dict[str, Any], list[Any]]:
        job = record["JobName"]
        plan = record["_plan"]
        candidate = record["_steps"][index]["_candidate"]
        endpoint = endpoint_name(job, index)
        await self.endpoints.track(job, endpoint)
        try:
            started = time.monotonic()
            await self.endpoints.deploy(record, endpoint, candidate)
            deployment = self.router.deployments.get(endpoint)
            if deployment is None:
                raise CandidateFailed("the temporary endpoint has no running instance")
            target = await self._target(deployment, plan, payloads)
            setup_s = time.monotonic() - started
            invocation_start = self.context.now()
            points = await self._drive(target, candidate, plan, payloads)
            invocation_end = self.context.now()
        finally:
            await self.endpoints.remove(job, endpoint)
        return scoring.benchmark(
            endpoint, candidate, plan, points, setup_s, invocation_start, invocation_end
        ), points

    async def _target(
        self, deployment: Deployment, plan: dict[str, Any], payloads: tuple[bytes, ...]
    ) -> _Target:
        pool = deployment.variants["AllTraffic"]
        if not isinstance(pool, ServerlessPool):
            replicas = deployment.replicas()
            if not replicas:
                raise CandidateFailed("the temporary endpoint has no running instance")
            instance = replicas[0].instance
            host, port = instance.address
            token = token_header(instance.address)
            return _Target(
                f"http://{host}:{port}/invocations",
                (token,) if token else (),
                lambda: [instance],
            )
        # The first request starts an instance: its cold start counts as setup time, as
        # SageMaker's ModelSetupTime of a serverless endpoint.
        try:
            await self.router.invoke(
                deployment, Invocation(payloads[0], plan["content_type"], None, None, None)
            )
        except Exception as exc:
            raise CandidateFailed(
                f"the first request to the serverless endpoint failed: {exc}"
            ) from exc
        host = (
            self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        )
        return _Target(
            f"http://{host}:{self.settings.port}/endpoints/{deployment.endpoint}/invocations",
            ((INTERNAL_TOKEN_HEADER, self.settings.internal_token),),
            lambda: [r.instance for r in pool.replicas],
            lambda: pool.billed_gb_seconds,
        )

    async def _drive(
        self,
        target: _Target,
        candidate: dict[str, Any],
        plan: dict[str, Any],
        payloads: tuple[bytes, ...],
    ) -> list[dict[str, Any]]:
        """Run the traffic steps in turn, stopping at the latency bound or MaxInvocations."""
        bound = plan["latency"]
        percentile = bound["percentile"] if bound else 95.0
        instance_type = get_instance_type(candidate.get("InstanceType", ""))
        memory_bytes = (
            instance_type.memory_gib * 2**30
            if instance_type
            else candidate.get("ServerlessConfig", {}).get("MemorySizeInMB", 1024) * 2**20
        )
        points: list[dict[str, Any]] = []
        for traffic in plan["traffic"]:
            if points and _past(plan):
                break  # JobDurationInSeconds: judge the candidate on the steps done
            users = max(traffic["users"], traffic["end_users"])
            spec = LoadSpec(
                url=target.url,
                mode="closed",
                payloads=payloads,
                content_type=plan["content_type"],
                headers=target.headers,
                max_connections=max(users, 1),
                timeout_s=self.settings.model_timeout_s,
                phases=(
                    Phase(
                        traffic["seconds"], users=traffic["users"], end_users=traffic["end_users"]
                    ),
                ),
            )
            usage = Usage(target.instances, memory_bytes)
            billed = target.billed_gb_seconds() if target.billed_gb_seconds else None
            result = await run_in_subprocess(spec)
            cpu, memory_percent = usage.read()
            point = scoring.point(traffic, result, percentile, cpu, memory_percent)
            if target.billed_gb_seconds and billed is not None:
                point["gb_seconds_per_inference"] = (target.billed_gb_seconds() - billed) / max(
                    result.completed, 1
                )
            points.append(point)
            if bound and point["latency_ms"] > bound["ms"]:
                break
            if (
                plan["max_invocations"]
                and point["invocations_per_minute"] >= plan["max_invocations"]
            ):
                break
        return points


def _past(plan: dict[str, Any]) -> bool:
    return plan.get("deadline") is not None and time.time() >= plan["deadline"]
