"""The inference recommender: load tests a model on candidate instance types and
serverless configurations.

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
re-runs the steps that had not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psutil

from modelhost import api
from modelhost.auth import INTERNAL_TOKEN_HEADER
from modelhost.catalog import get_instance_type, serverless_usd_per_gb_second
from modelhost.config import Settings
from modelhost.controllers.loop import ReconcileLoop, cancel_all
from modelhost.domain import kinds
from modelhost.domain.failures import fit_failure_reason
from modelhost.domain.recommendations import candidate_label
from modelhost.loadgen import LoadResult, LoadSpec, Phase, run_in_subprocess
from modelhost.router import Deployment, Invocation, Router, ServerlessPool
from modelhost.storage import ObjectStore, StateStore

log = logging.getLogger(__name__)

KIND = kinds.RECOMMENDATION_JOB
JOB_TAG = "modelhost:recommendation-job"
_MAX_PAYLOADS = 1000
_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_MAX_ERROR_FRACTION = 0.01  # a traffic step with more failed requests does not qualify


class CandidateFailed(Exception):
    """This candidate could not be benchmarked; the job goes on with the others."""


@dataclass(frozen=True)
class _Target:
    """Where a candidate's load goes, and how to read what it cost: the instances' root
    processes now, and (serverless) the GB-seconds billed so far."""

    url: str
    headers: tuple[tuple[str, str], ...]
    pids: Callable[[], list[int]]
    billed_gb_seconds: Callable[[], float] | None = None


class RecommendationController(ReconcileLoop):
    def __init__(self, settings: Settings, store: StateStore, objects: ObjectStore,
                 router: Router, context: api.Context) -> None:
        super().__init__("recommender reconcile", 1.0)
        self.settings = settings
        self.store = store
        self.objects = objects
        self.router = router
        self.context = context
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()  # jobs whose task was cancelled for a stop
        self._shutting_down = False

    async def step(self) -> None:
        self.reconcile()

    def reconcile(self) -> None:
        for record in self.store.list(KIND):
            name, status = record["JobName"], record["Status"]
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

    def load_curves(self, name: str) -> dict[str, Any] | None:
        """Every traffic step's throughput and latency per candidate, for charts: the
        SageMaker shapes only carry the chosen point."""
        record = self.store.get(KIND, name)
        if record is None:
            return None
        return {"JobName": name, "Status": record["Status"],
                "Latency": record["_plan"]["latency"],
                "Candidates": [{"Candidate": step["_candidate"], "Status": step["Status"],
                                "Points": step.get("_points", [])}
                               for step in record["_steps"]]}

    # --- one job ----------------------------------------------------------------------

    def _update(self, name: str, **fields: Any) -> dict[str, Any] | None:
        """Set fields of a running job; None (and no change) once a stop was asked for,
        so the controller never writes over STOPPING."""
        def change(record: dict[str, Any]) -> dict[str, Any] | None:
            if record["Status"] not in ("PENDING", "IN_PROGRESS"):
                return None
            record.update(fields, LastModifiedTime=self.context.now())
            return record
        record = self.store.modify(KIND, name, change)
        return record if record is not None and all(
            record.get(k) == v for k, v in fields.items()) else None

    def _update_step(self, name: str, index: int, **fields: Any) -> None:
        def change(record: dict[str, Any]) -> dict[str, Any]:
            record["_steps"][index].update(fields)
            record["LastModifiedTime"] = self.context.now()
            return record
        self.store.modify(KIND, name, change)

    async def _run_job(self, name: str) -> None:
        try:
            await self._clean_up(name)  # leftovers of a run a restart interrupted
            record = self._update(name, Status="IN_PROGRESS")
            if record is None:
                return  # stopped meanwhile; the next reconcile finishes the stop
            payloads = await asyncio.to_thread(
                _sample_payloads, self.objects,
                record["InputConfig"]["ContainerConfig"]["PayloadConfig"]["SamplePayloadUrl"])
            for index, step in enumerate(record["_steps"]):
                if step["Status"] in ("COMPLETED", "FAILED"):
                    continue
                if _past(record["_plan"]):
                    self._update_step(name, index, Status="FAILED", InferenceBenchmark=_failed(
                        name, index, step,
                        "JobDurationInSeconds reached before this candidate"))
                    continue
                self._update_step(name, index, Status="IN_PROGRESS")
                try:
                    benchmark, points = await self._benchmark(record, index, payloads)
                    self._update_step(name, index, Status="COMPLETED",
                                      InferenceBenchmark=benchmark, _points=points)
                except CandidateFailed as exc:
                    self._update_step(name, index, Status="FAILED",
                                      InferenceBenchmark=_failed(name, index, step,
                                                                 fit_failure_reason(str(exc))))
            self._finish(name)
        except asyncio.CancelledError:
            if not self._shutting_down:
                await asyncio.shield(self._stop(name))
            raise
        except Exception as exc:
            log.exception("recommendation job %s failed", name)
            await self._clean_up(name)
            self._update(name, Status="FAILED", FailureReason=fit_failure_reason(str(exc)),
                         CompletionTime=self.context.now())
        finally:
            self._cancelled.discard(name)

    async def _stop(self, name: str) -> None:
        await self._clean_up(name)

        def change(record: dict[str, Any]) -> dict[str, Any]:
            for step in record["_steps"]:
                if step["Status"] in ("PENDING", "IN_PROGRESS"):
                    step["Status"] = "STOPPED"
            now = self.context.now()
            record.update(Status="STOPPED", LastModifiedTime=now, CompletionTime=now)
            return record
        self.store.modify(KIND, name, change)

    def _finish(self, name: str) -> None:
        """Recommend every candidate that met the latency bound, cheapest per inference
        first; the job fails only when none did."""
        record = self.store.get(KIND, name)
        assert record is not None
        recommendations = []
        for step in record["_steps"]:
            benchmark = step.get("InferenceBenchmark", {})
            if step["Status"] == "COMPLETED" and "FailureReason" not in benchmark:
                recommendations.append({k: benchmark[k] for k in (
                    "Metrics", "EndpointConfiguration", "ModelConfiguration",
                    "InvocationStartTime", "InvocationEndTime")})
        recommendations.sort(key=lambda r: (r["Metrics"]["CostPerInference"],
                                            r["Metrics"]["CostPerHour"]))
        for number, recommendation in enumerate(recommendations, 1):
            recommendation["RecommendationId"] = f"{name}/{number}"
        now = self.context.now()
        if recommendations:
            self._update(name, Status="COMPLETED", CompletionTime=now,
                         _recommendations=recommendations)
        else:
            reasons = "; ".join(
                f"{candidate_label(s['_candidate'])}: "
                f"{s.get('InferenceBenchmark', {}).get('FailureReason', s['Status'])}"
                for s in record["_steps"])
            self._update(name, Status="FAILED", CompletionTime=now,
                         FailureReason=fit_failure_reason(
                             f"No candidate met the job's conditions. {reasons}"))

    # --- one candidate ----------------------------------------------------------------

    async def _benchmark(self, record: dict[str, Any], index: int,
                         payloads: tuple[bytes, ...]) -> tuple[dict[str, Any], list[Any]]:
        job = record["JobName"]
        plan = record["_plan"]
        candidate = record["_steps"][index]["_candidate"]
        endpoint = _endpoint_name(job, index)
        self.store.modify(KIND, job, lambda r: {
            **r, "_endpoints": sorted(set(r["_endpoints"]) | {endpoint})})
        try:
            started = time.monotonic()
            await self._deploy(job, endpoint, record["InputConfig"]["ModelName"], candidate)
            deployment = self.router.deployments.get(endpoint)
            if deployment is None:
                raise CandidateFailed("the temporary endpoint has no running instance")
            target = await self._target(deployment, plan, payloads)
            setup_s = time.monotonic() - started
            invocation_start = self.context.now()
            points = await self._drive(target, candidate, plan, payloads)
            invocation_end = self.context.now()
        finally:
            await self._remove_endpoint(job, endpoint)
        return _benchmark(endpoint, candidate, plan, points, setup_s, invocation_start,
                          invocation_end), points

    async def _target(self, deployment: Deployment, plan: dict[str, Any],
                      payloads: tuple[bytes, ...]) -> _Target:
        pool = deployment.variants["AllTraffic"]
        if not isinstance(pool, ServerlessPool):
            replicas = deployment.replicas()
            if not replicas:
                raise CandidateFailed("the temporary endpoint has no running instance")
            instance = replicas[0].instance
            host, port = instance.address
            return _Target(f"http://{host}:{port}/invocations", (),
                           lambda: [] if instance.pid is None else [instance.pid])
        # The first request starts an instance: its cold start counts as setup time, as
        # SageMaker's ModelSetupTime of a serverless endpoint.
        try:
            await self.router.invoke(deployment, Invocation(
                payloads[0], plan["content_type"], None, None, None))
        except Exception as exc:
            raise CandidateFailed(f"the first request to the serverless endpoint failed: "
                                  f"{exc}") from exc
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") \
            else "127.0.0.1"
        return _Target(
            f"http://{host}:{self.settings.port}/endpoints/{deployment.endpoint}/invocations",
            ((INTERNAL_TOKEN_HEADER, self.settings.internal_token),),
            lambda: [r.instance.pid for r in pool.replicas if r.instance.pid is not None],
            lambda: pool.billed_gb_seconds)

    async def _drive(self, target: _Target, candidate: dict[str, Any],
                     plan: dict[str, Any], payloads: tuple[bytes, ...]) -> list[dict[str, Any]]:
        """Run the traffic steps in turn, stopping at the latency bound or MaxInvocations."""
        bound = plan["latency"]
        percentile = bound["percentile"] if bound else 95.0
        instance_type = get_instance_type(candidate.get("InstanceType", ""))
        memory_bytes = (instance_type.memory_gib * 2**30 if instance_type else
                        candidate.get("ServerlessConfig", {}).get("MemorySizeInMB", 1024) * 2**20)
        points = []
        for traffic in plan["traffic"]:
            if points and _past(plan):
                break  # JobDurationInSeconds: judge the candidate on the steps done
            users = max(traffic["users"], traffic["end_users"])
            spec = LoadSpec(url=target.url, mode="closed", payloads=payloads,
                            content_type=plan["content_type"], headers=target.headers,
                            max_connections=max(users, 1),
                            timeout_s=self.settings.model_timeout_s,
                            phases=(Phase(traffic["seconds"], users=traffic["users"],
                                          end_users=traffic["end_users"]),))
            usage = _Usage(target.pids, memory_bytes)
            billed = target.billed_gb_seconds() if target.billed_gb_seconds else None
            result = await run_in_subprocess(spec)
            cpu, memory_percent = usage.read()
            point = _point(traffic, result, percentile, cpu, memory_percent)
            if target.billed_gb_seconds and billed is not None:
                point["gb_seconds_per_inference"] = (
                    target.billed_gb_seconds() - billed) / max(result.completed, 1)
            points.append(point)
            if bound and point["latency_ms"] > bound["ms"]:
                break
            if plan["max_invocations"] and point["invocations_per_minute"] >= \
                    plan["max_invocations"]:
                break
        return points

    # --- temporary endpoints ----------------------------------------------------------

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """A control-plane operation through the same path (and validation) as a client's."""
        status, body = await asyncio.to_thread(
            api.handle, self.context, f"SageMaker.{operation}", orjson.dumps(params))
        answer = orjson.loads(body)
        if status != 200:
            raise CandidateFailed(f"{operation}: {answer.get('message', answer)}")
        return dict(answer)

    async def _deploy(self, job: str, endpoint: str, model: str,
                      candidate: dict[str, Any]) -> None:
        variant = {"VariantName": "AllTraffic", "ModelName": model, **candidate}
        await self._call("CreateEndpointConfig", EndpointConfigName=endpoint,
                         ProductionVariants=[variant])
        await self._call("CreateEndpoint", EndpointName=endpoint, EndpointConfigName=endpoint,
                         Tags=[{"Key": JOB_TAG, "Value": job}])
        deadline = time.monotonic() + self.settings.startup_timeout_s + 60
        while time.monotonic() < deadline:
            state = self.store.get("endpoint", endpoint)
            if state is None or state["EndpointStatus"] == "Failed":
                reason = (state or {}).get("FailureReason", "the endpoint disappeared")
                raise CandidateFailed(f"temporary endpoint failed: {reason}")
            if state["EndpointStatus"] == "InService":
                return
            await asyncio.sleep(0.2)
        raise CandidateFailed("temporary endpoint did not reach InService in time")

    async def _remove_endpoint(self, job: str, endpoint: str) -> None:
        """Delete the endpoint and its config and wait until its instances are gone."""
        with contextlib.suppress(CandidateFailed):
            await self._call("DeleteEndpoint", EndpointName=endpoint)
        deadline = time.monotonic() + 120
        while self.store.get("endpoint", endpoint) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        with contextlib.suppress(CandidateFailed):
            await self._call("DeleteEndpointConfig", EndpointConfigName=endpoint)
        self.store.modify(KIND, job, lambda r: {
            **r, "_endpoints": [e for e in r["_endpoints"] if e != endpoint]})

    async def _clean_up(self, name: str) -> None:
        record = self.store.get(KIND, name)
        for endpoint in (record or {}).get("_endpoints", []):
            await self._remove_endpoint(name, endpoint)


# --- pure helpers ----------------------------------------------------------------------


def _past(plan: dict[str, Any]) -> bool:
    return plan.get("deadline") is not None and time.time() >= plan["deadline"]


def _endpoint_name(job: str, index: int) -> str:
    """Stable per job and candidate, so a restarted server finds what it left behind."""
    return f"recommender-{hashlib.sha256(job.encode()).hexdigest()[:12]}-{index}"


def _endpoint_configuration(endpoint: str, candidate: dict[str, Any]) -> dict[str, Any]:
    return {"EndpointName": endpoint, "VariantName": "AllTraffic", **candidate}


def _failed(job: str, index: int, step: dict[str, Any], reason: str) -> dict[str, Any]:
    """InferenceBenchmark of a candidate that was not (or could not be) benchmarked."""
    return {"ModelConfiguration": {}, "FailureReason": reason,
            "EndpointConfiguration": _endpoint_configuration(_endpoint_name(job, index),
                                                             step["_candidate"])}


def _processes(pid: int) -> list[psutil.Process]:
    """An instance's model server and its workers; empty once it is gone."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class _Usage:
    """CPU (percent of one core, summed over the model servers and their workers, as
    CloudWatch's CPUUtilization) and resident memory (percent of each instance's memory,
    averaged over the instances) of a candidate's instances over a step. A serverless
    candidate's instances come and go: one started during the step counts from its start."""

    def __init__(self, pids: Callable[[], list[int]], memory_bytes: float) -> None:
        self.pids = pids
        self.memory_bytes = memory_bytes
        self.cpu_before = {pid: _cpu_seconds(_processes(pid)) for pid in pids()}
        self.started = time.monotonic()

    def read(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        trees = [_processes(pid) for pid in {*self.cpu_before, *self.pids()}]
        cpu = sum(max(_cpu_seconds(tree) - self.cpu_before.get(tree[0].pid, 0.0), 0.0)
                  for tree in trees if tree)
        rss = 0.0
        for tree in trees:
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    rss += process.memory_info().rss
        instances = max(sum(1 for tree in trees if tree), 1)
        return cpu / elapsed * 100, rss / (self.memory_bytes * instances) * 100


def _point(traffic: dict[str, int], result: LoadResult, percentile: float, cpu: float,
           memory_percent: float) -> dict[str, Any]:
    requests = result.completed + result.error_count
    return {
        "users": traffic["end_users"], "seconds": traffic["seconds"],
        "throughput_rps": result.throughput,
        "invocations_per_minute": int(result.throughput * 60),
        "latency_ms": result.percentile_ms(percentile),
        "p50_ms": result.percentile_ms(50), "p99_ms": result.percentile_ms(99),
        "errors": result.error_count,
        "error_fraction": result.error_count / requests if requests else 1.0,
        "cpu_percent": round(cpu, 2), "memory_percent": round(memory_percent, 2),
    }


def _benchmark(endpoint: str, candidate: dict[str, Any], plan: dict[str, Any],
               points: list[dict[str, Any]], setup_s: float, started: float,
               ended: float) -> dict[str, Any]:
    """InferenceBenchmark of one candidate: the highest-throughput traffic step within the
    latency bound (and with under 1% errors), or a FailureReason when none was."""
    bound = plan["latency"]
    fit = [p for p in points if p["error_fraction"] <= _MAX_ERROR_FRACTION
           and p["throughput_rps"] > 0 and (not bound or p["latency_ms"] <= bound["ms"])]
    best = max(fit, key=lambda p: p["throughput_rps"]) if fit else None
    chosen = best or min(points, key=lambda p: p["latency_ms"])
    per_minute = max(chosen["invocations_per_minute"], 1)
    instance_type = get_instance_type(candidate.get("InstanceType", ""))
    if instance_type is not None:
        cost_per_hour = instance_type.usd_per_hour
        cost_per_inference = cost_per_hour / (per_minute * 60)
    else:
        # Serverless bills request duration x memory: an inference costs the GB-seconds
        # the router billed for it, and an hour costs an hour of inferences at this
        # throughput (so CostPerInference = CostPerHour / invocations per hour, as for an
        # instance).
        cost_per_inference = (chosen.get("gb_seconds_per_inference", 0.0)
                              * serverless_usd_per_gb_second())
        cost_per_hour = cost_per_inference * per_minute * 60
    metrics = {
        "CostPerHour": cost_per_hour,
        "CostPerInference": cost_per_inference,
        "MaxInvocations": chosen["invocations_per_minute"],
        "ModelLatency": max(1, round(chosen["latency_ms"])),
        "CpuUtilization": chosen["cpu_percent"],
        "MemoryUtilization": chosen["memory_percent"],
        "ModelSetupTime": max(1, round(setup_s)),
    }
    benchmark: dict[str, Any] = {
        "Metrics": metrics,
        "EndpointMetrics": {"MaxInvocations": metrics["MaxInvocations"],
                            "ModelLatency": metrics["ModelLatency"]},
        "EndpointConfiguration": _endpoint_configuration(endpoint, candidate),
        "ModelConfiguration": {},
        "InvocationStartTime": started,
        "InvocationEndTime": ended,
    }
    if best is None:
        label = f"{bound['label']} ≤ {bound['ms']} ms" if bound else "under 1% errors"
        benchmark["FailureReason"] = (
            f"no traffic step met {label}: at the lightest load "
            f"{chosen['latency_ms']:.2f} ms with {chosen['errors']} errors")
    return benchmark


def _sample_payloads(objects: ObjectStore, uri: str) -> tuple[bytes, ...]:
    """SamplePayloadUrl: a tar(.gz) of payload files (as SageMaker expects), a prefix of
    payload objects, or one object used as the only payload."""
    if objects.is_file(uri):
        data = objects.get_bytes(uri)
        payloads: list[bytes] = []
        with contextlib.suppress(tarfile.TarError), \
                tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive:
                if member.isfile() and member.size <= _MAX_PAYLOAD_BYTES:
                    file = archive.extractfile(member)
                    if file is not None:
                        payloads.append(file.read())
                if len(payloads) >= _MAX_PAYLOADS:
                    break
        return tuple(payloads) if payloads else (data,)
    uris = objects.list(uri)[:_MAX_PAYLOADS]
    if not uris:
        raise ValueError(f"SamplePayloadUrl {uri} holds no payloads")
    return tuple(objects.get_bytes(u) for u in uris)
