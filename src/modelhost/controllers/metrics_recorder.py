"""Records the metrics the server computes as CloudWatch-style history (modelhost.history).

Nothing here runs per request but two observers: each (endpoint, variant)'s series in
`modelhost.metrics` appends its ModelLatency and OverheadLatency to a list (one C call);
the writer thread turns the lists into sketches. Everything else is read once per flush,
on the event loop and without I/O: the Prometheus counters' growth since the last flush
(Invocations, errors, cold starts, cost), the router's instances and requests in
flight, the instances' CPU and memory (psutil, /proc reads), the async backlog gauges.
The batch is written to the SQLite file by one writer thread; the loop never waits on
the database.

What is recorded, by namespace and dimensions:
- `AWS/SageMaker`, EndpointName + VariantName: Invocations, Invocation4XXErrors,
  Invocation5XXErrors, InvocationsPerInstance (one value per flush: the count in it),
  ModelLatency, OverheadLatency (microseconds, one value per invocation),
  ConcurrentRequestsPerModel, ModelSetupTime (serverless, microseconds),
  ServerlessConcurrentExecutionsUtilization (serverless: the most requests in flight at
  once during the flush over MaxConcurrency).
  Errors before a variant was chosen carry EndpointName alone.
- `AWS/SageMaker`, InferenceComponentName: Invocations, InvocationsPerCopy (the count in
  the flush per serving copy), ConcurrentRequestsPerCopy, Invocation4XXErrors,
  Invocation5XXErrors, ModelLatency, OverheadLatency (microseconds, one value per
  invocation). The counts are the component route's, the
  ones its target tracking policies read (`scaling_metrics.ComponentState`).
- `AWS/SageMaker`, EndpointName: ApproximateBacklogSize, ApproximateBacklogSizePerInstance,
  HasBacklogWithoutCapacity (asynchronous endpoints).
- `/aws/sagemaker/Endpoints`, EndpointName + VariantName: CPUUtilization (percent of one
  core, averaged over instances), MemoryUtilization (percent of the instance type's memory).
- `Modelhost/Endpoints`, EndpointName + VariantName: InstanceCount, ColdStarts, Cost (USD
  of instance time and serverless GB-seconds at list price), ConcurrentExecutions
  (serverless: the most requests in flight at once during the flush, waiting for a cold
  start or running) — modelhost's own, with no SageMaker equivalent.

A serverless variant's peak is kept by its pool (one comparison as a request is admitted)
and taken once per flush, so a burst between two flushes is not missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Histogram

from modelhost import metrics
from modelhost.controllers.scaling_metrics import ComponentState, VariantState
from modelhost.history import Distribution, MetricStore, Point, SeriesKey
from modelhost.router import Router, ServerlessPool

log = logging.getLogger(__name__)

SAGEMAKER = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
MODELHOST = "Modelhost/Endpoints"
_MICROSECONDS = "Microseconds"
_PRUNE_EVERY_S = 60.0
_UTILIZATION = "ServerlessConcurrentExecutionsUtilization"
_ASYNC = (
    "ApproximateBacklogSize",
    "ApproximateBacklogSizePerInstance",
    "HasBacklogWithoutCapacity",
)
Labels = tuple[str, str]
Add = Callable[[SeriesKey, str, Distribution], None]
Latencies = list[tuple[SeriesKey, list[float]]]


def _key(namespace: str, name: str, endpoint: str, variant: str | None) -> SeriesKey:
    dimensions = [("EndpointName", endpoint)]
    if variant is not None and variant != "-":
        dimensions.append(("VariantName", variant))
    return namespace, name, tuple(sorted(dimensions))


def _component_key(name: str, component: str) -> SeriesKey:
    return SAGEMAKER, name, (("InferenceComponentName", component),)


def _one(value: float) -> Distribution:
    made = Distribution()
    made.observe(value)
    return made


class MetricsRecorder:
    def __init__(
        self,
        store: MetricStore,
        router: Router,
        flush_interval_s: float,
        retention_s: dict[int, float],
        max_bytes: int,
    ) -> None:
        self.store = store
        self.router = router
        self.interval_s = flush_interval_s
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self._state = VariantState(router)
        self._components = ComponentState(router)
        self._latencies: dict[Labels, tuple[list[float], list[float]]] = {}
        self._counted: dict[tuple[str, Labels], float] = {}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="metrics-history")
        self._last_prune = 0.0

    # -- the hot path's side -----------------------------------------------------------

    def attach(self) -> None:
        """Start observing latencies: every variant's series now and from now on."""
        metrics.on_new_variant = self._observe
        for series in metrics.variants():
            self._observe(series)

    def detach(self) -> None:
        metrics.on_new_variant = None
        for series in metrics.variants():
            series.history_model = series.history_overhead = None

    def _observe(self, series: metrics.VariantMetrics) -> None:
        # The hot path only appends (a C call); the writer thread makes the sketches.
        model: list[float] = []
        overhead: list[float] = []
        self._latencies[(series.endpoint, series.variant)] = (model, overhead)
        series.history_model = model.append
        series.history_overhead = overhead.append

    # -- once per flush --------------------------------------------------------------

    def collect(self, now: float) -> tuple[list[Point], Latencies]:
        """Everything since the last call, stamped `now`, on the event loop: points, and
        the latencies (seconds) as observed, for `write` to turn into sketches."""
        points: list[Point] = []

        def add(key: SeriesKey, unit: str, values: Distribution) -> None:
            points.append(Point(key, unit, now, values))

        latencies, self._latencies = self._latencies, {}
        for series in metrics.variants():
            self._observe(series)
        raw: Latencies = []
        for (endpoint, variant), (model, overhead) in latencies.items():
            for name, values in (("ModelLatency", model), ("OverheadLatency", overhead)):
                if values:
                    raw.append((_key(SAGEMAKER, name, endpoint, variant), values))

        invocations = self._growth("Invocations", metrics.INVOCATIONS)
        errors_4xx = self._growth("4XX", metrics.INVOCATION_4XX)
        errors_5xx = self._growth("5XX", metrics.INVOCATION_5XX)
        for labels in sorted(set(invocations) | set(errors_4xx) | set(errors_5xx)):
            endpoint, variant = labels
            count = invocations.get(labels, 0.0)
            add(_key(SAGEMAKER, "Invocations", endpoint, variant), "None", _one(count))
            for name, grown in (
                ("Invocation4XXErrors", errors_4xx),
                ("Invocation5XXErrors", errors_5xx),
            ):
                add(_key(SAGEMAKER, name, endpoint, variant), "None", _one(grown.get(labels, 0.0)))
            instances = self._state.instances({"EndpointName": endpoint, "VariantName": variant})
            if variant != "-" and instances is not None:
                add(
                    _key(SAGEMAKER, "InvocationsPerInstance", endpoint, variant),
                    "None",
                    _one(count / max(instances, 1.0)),
                )
        for labels, amount in self._growth("ColdStarts", metrics.SERVERLESS_COLD_STARTS).items():
            add(_key(MODELHOST, "ColdStarts", *labels), "Count", _one(amount))
        cost = self._growth("InstanceCost", metrics.INSTANCE_COST)
        for labels, amount in self._growth("ServerlessCost", metrics.SERVERLESS_COST).items():
            cost[labels] = cost.get(labels, 0.0) + amount
        for labels, amount in cost.items():
            add(_key(MODELHOST, "Cost", *labels), "None", _one(amount))
        for labels, (count, total) in self._setup_times().items():
            setup = Distribution()
            # A histogram keeps no single times: the flush's average stands for each.
            setup.observe(total * 1e6 / count, count)
            add(_key(SAGEMAKER, "ModelSetupTime", *labels), _MICROSECONDS, setup)
        self._gauges(add)
        self._component_metrics(add)
        for component, route in list(self.router.components.items()):
            answered = route.take_latencies()
            if answered:
                model = [model for model, _ in answered]
                overhead = [overhead for _, overhead in answered]
                raw.append((_component_key("ModelLatency", component), model))
                raw.append((_component_key("OverheadLatency", component), overhead))
        return points, raw

    def _component_metrics(self, add: Add) -> None:
        """Each inference component's invocations since the last flush (a route's count
        runs from 0 again when the route is made anew) and requests in flight, per copy."""
        for component in list(self.router.components):
            dimensions = {"InferenceComponentName": component}
            total = self._components.invocations(dimensions)
            copies = self._components.copies(dimensions)
            outstanding = self._components.outstanding(dimensions)
            if total is None or copies is None or outstanding is None:
                continue
            grown = self._component_growth("Invocations", component, total)
            if grown > 0:
                add(_component_key("Invocations", component), "None", _one(grown))
                per_copy = _one(grown / max(copies, 1.0))
                add(_component_key("InvocationsPerCopy", component), "None", per_copy)
            route = self.router.components[component]
            for name, errors in (
                ("Invocation4XXErrors", route.errors_4xx),
                ("Invocation5XXErrors", route.errors_5xx),
            ):
                failed = self._component_growth(name, component, float(errors))
                if failed > 0 or grown > 0:
                    add(_component_key(name, component), "None", _one(failed))
            per_copy = _one(outstanding / max(copies, 1.0))
            add(_component_key("ConcurrentRequestsPerCopy", component), "Count", per_copy)

    def _component_growth(self, name: str, component: str, total: float) -> float:
        """How much a component route's running count grew since the last flush (it runs
        from 0 again when the route is made anew)."""
        key = (f"Component{name}", (component, ""))
        before = self._counted.get(key, 0.0)
        self._counted[key] = total
        return total - before if total >= before else total

    def write(self, points: list[Point], latencies: Latencies, now: float) -> None:
        """Sketch the latencies and write everything: in the writer thread."""
        sketched = [
            Point(key, _MICROSECONDS, now, Distribution.of_seconds(values))
            for key, values in latencies
        ]
        self.store.write([*points, *sketched])

    def _gauges(self, add: Add) -> None:
        for endpoint, deployment in list(self.router.deployments.items()):
            for variant, pool in deployment.variants.items():
                dimensions = {"EndpointName": endpoint, "VariantName": variant}
                instances = self._state.instances(dimensions) or 0.0
                add(_key(MODELHOST, "InstanceCount", endpoint, variant), "Count", _one(instances))
                if isinstance(pool, ServerlessPool):
                    self._serverless(add, endpoint, pool)
                outstanding = self._state.outstanding(dimensions)
                if outstanding is not None:
                    add(
                        _key(SAGEMAKER, "ConcurrentRequestsPerModel", endpoint, variant),
                        "Count",
                        _one(outstanding / max(instances, 1.0)),
                    )
                for name, read in (
                    ("CPUUtilization", self._state.cpu_utilization),
                    ("MemoryUtilization", self._state.memory_utilization),
                ):
                    value = read(dimensions)
                    if value is not None:
                        key = _key(INSTANCE_NAMESPACE, name, endpoint, variant)
                        add(key, "Percent", _one(value))
            if deployment.asynchronous:
                for name in _ASYNC:
                    value = metrics.async_backlog_metric(name, endpoint)
                    if value is not None:
                        add(_key(SAGEMAKER, name, endpoint, None), "Count", _one(value))

    @staticmethod
    def _serverless(add: Add, endpoint: str, pool: ServerlessPool) -> None:
        peak = float(pool.take_peak())
        key = _key(MODELHOST, "ConcurrentExecutions", endpoint, pool.name)
        add(key, "Count", _one(peak))
        utilization = _one(peak / max(pool.max_concurrency, 1))
        add(_key(SAGEMAKER, _UTILIZATION, endpoint, pool.name), "None", utilization)

    def _growth(self, name: str, counter: Counter) -> dict[Labels, float]:
        """How much each (endpoint, variant) of a counter grew since the last flush
        (other labels summed); only those that grew."""
        totals: dict[Labels, float] = {}
        for family in counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = (sample.labels["endpoint"], sample.labels["variant"])
                    totals[labels] = totals.get(labels, 0.0) + sample.value
        grown = {}
        for labels, total in totals.items():
            before = self._counted.get((name, labels), 0.0)
            self._counted[(name, labels)] = total
            if total > before:
                grown[labels] = total - before
        return grown

    def _setup_times(self) -> dict[Labels, tuple[float, float]]:
        histogram: Histogram = metrics.MODEL_SETUP_TIME
        sums: dict[Labels, float] = {}
        counts: dict[Labels, float] = {}
        for family in histogram.collect():
            for sample in family.samples:
                labels = (sample.labels["endpoint"], sample.labels["variant"])
                if sample.name.endswith("_sum"):
                    sums[labels] = sample.value
                elif sample.name.endswith("_count"):
                    counts[labels] = sample.value
        found = {}
        for labels, count in counts.items():
            before_count = self._counted.get(("SetupCount", labels), 0.0)
            before_sum = self._counted.get(("SetupSum", labels), 0.0)
            self._counted[("SetupCount", labels)] = count
            self._counted[("SetupSum", labels)] = sums.get(labels, 0.0)
            if count > before_count:
                found[labels] = (count - before_count, sums.get(labels, 0.0) - before_sum)
        return found

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Flush every interval, aligned to the wall clock; prune once a minute."""
        loop = asyncio.get_running_loop()
        self.attach()
        try:
            while True:
                now = time.time()
                await asyncio.sleep(self.interval_s - now % self.interval_s)
                await self.flush(loop)
        finally:
            self.detach()

    async def flush(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        now = time.time()
        # Stamped inside the span just ended, so it lands in that 10 s slot.
        stamp = now - min(self.interval_s, 10.0) / 2
        points, latencies = self.collect(stamp)
        try:
            await loop.run_in_executor(self._writer, self.write, points, latencies, stamp)
            if now - self._last_prune >= _PRUNE_EVERY_S:
                self._last_prune = now
                await loop.run_in_executor(
                    self._writer, self.store.prune, now, self.retention_s, self.max_bytes
                )
        except Exception:
            log.exception("could not write metrics history to %s", self.store.path)

    async def shutdown(self) -> None:
        """Write what the last flush has not, then stop the writer."""
        try:
            await self.flush()
        finally:
            self._writer.shutdown(wait=True)
