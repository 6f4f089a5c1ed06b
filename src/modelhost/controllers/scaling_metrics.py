"""The metrics scaling policies can track, by their CloudWatch names and dimensions.

Policies name metrics as CloudWatch does (`InvocationsPerInstance` with dimensions
`EndpointName` and `VariantName`, ...); modelhost has no CloudWatch, so this resolver maps
each name to a source that reads the server's own state. The autoscaling controller takes
a reading of every metric a policy uses a few times per evaluation and asks for its value
over the recent window. A metric is plugged in with one line, as the asynchronous
backlog metrics are:

    resolver.register("ApproximateBacklogSize", Gauge(lambda d: backlog(d["EndpointName"])))
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from modelhost import metrics
from modelhost.catalog import get_instance_type
from modelhost.instances import Instance, ResourceUsage
from modelhost.router import ComponentRoute, Replica, Router

Dimensions = Mapping[str, str]
Reader = Callable[[Dimensions], float | None]
Samples = Sequence[tuple[float, float]]  # (monotonic time, reading)
# Kept by the resolver as (name, sorted dimensions).
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class Source(Protocol):
    def read(self, dimensions: Dimensions) -> float | None:
        """One reading now; None when there is nothing to read (no such endpoint)."""
        ...

    def value(self, samples: Samples, statistic: str, dimensions: Dimensions) -> float | None:
        """The metric over a window of readings (oldest first, at least two). May run in a
        worker thread (the autoscaling evaluation): only `read`, on the event loop, may
        look at the router."""
        ...


_STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "Average": lambda values: sum(values) / len(values),
    "Minimum": min,
    "Maximum": max,
    "Sum": sum,
    "SampleCount": lambda values: float(len(values)),
}


@dataclass(frozen=True)
class Gauge:
    """A level read as it is now (requests in flight, CPU, queue length); the window's
    value is the policy's statistic over the readings."""

    reader: Reader

    def read(self, dimensions: Dimensions) -> float | None:
        return self.reader(dimensions)

    def value(self, samples: Samples, statistic: str, dimensions: Dimensions) -> float | None:
        return _STATISTICS.get(statistic, _STATISTICS["Average"])([v for _, v in samples])


@dataclass(frozen=True)
class PerMinute:
    """A running count (invocations); the window's value is its rate per minute, the
    period SageMaker's Invocations metrics are reported in."""

    reader: Reader

    def read(self, dimensions: Dimensions) -> float | None:
        return self.reader(dimensions)

    def value(self, samples: Samples, statistic: str, dimensions: Dimensions) -> float | None:
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        return max(last - first, 0.0) / (last_at - first_at) * 60.0


@dataclass(frozen=True)
class PerInstance:
    """Another source's value divided by the instances serving now: the utilisation kind
    of metric target tracking needs, one that falls as instances are added. With no
    instance serving it is the whole value (a backlog waiting for a first instance)."""

    source: Source
    instances: Reader
    #: The instances serving at the last reading, by dimensions: `value` must not read
    #: the router (see `Source.value`), so it divides by the count `read` saw.
    _counts: dict[tuple[tuple[str, str], ...], float | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def read(self, dimensions: Dimensions) -> float | None:
        self._counts[tuple(sorted(dimensions.items()))] = self.instances(dimensions)
        return self.source.read(dimensions)

    def value(self, samples: Samples, statistic: str, dimensions: Dimensions) -> float | None:
        total = self.source.value(samples, statistic, dimensions)
        count = self._counts.get(tuple(sorted(dimensions.items())))
        if total is None or count is None:
            return None
        return total / max(count, 1.0)


class MetricResolver:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._sources: dict[str, Source] = {}
        self._history: dict[SeriesKey, deque[tuple[float, float]]] = {}

    def register(self, name: str, source: Source) -> None:
        self._sources[name] = source

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._sources))

    def __len__(self) -> int:
        return len(self._sources)

    def sample(self, name: str, dimensions: Dimensions, now: float | None = None) -> None:
        """Take one reading of a series; readings older than the window are dropped."""
        source = self._sources.get(name)
        if source is None:
            return
        reading = source.read(dimensions)
        history = self._history.setdefault(series_key(name, dimensions), deque())
        now = time.monotonic() if now is None else now
        if reading is not None:
            history.append((now, reading))
        while history and history[0][0] < now - self.window_s:
            history.popleft()

    def value(self, name: str, dimensions: Dimensions, statistic: str = "Average") -> float | None:
        """The series over the window; None until readings cover half of it, so a policy
        never acts on a moment's spike or on a series it has only started to watch."""
        source = self._sources.get(name)
        history = self._history.get(series_key(name, dimensions))
        if source is None or not history or len(history) < 2:
            return None
        if history[-1][0] - history[0][0] < self.window_s / 2:
            return None
        return source.value(list(history), statistic, dimensions)

    def forget_except(self, keep: set[SeriesKey]) -> None:
        """Drop the readings of series no policy watches any more."""
        for key in [k for k in self._history if k not in keep]:
            del self._history[key]


def series_key(name: str, dimensions: Dimensions) -> SeriesKey:
    return name, tuple(sorted(dimensions.items()))


class VariantState:
    """Readings from the router's live deployments and the instances' processes."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._processes: dict[int, psutil.Process] = {}
        self._usages: dict[int, tuple[Instance, ResourceUsage, ResourceUsage]] = {}

    def replicas(self, dimensions: Dimensions) -> list[Replica] | None:
        deployment = self._router.deployments.get(dimensions.get("EndpointName", ""))
        if deployment is None:
            return None
        # During a guarded update the new fleet counts too: alarms that watch it decide
        # whether the update rolls back.
        fleets = [deployment] if deployment.incoming is None else [deployment, deployment.incoming]
        variant = dimensions.get("VariantName")
        if variant is None:
            return [r for fleet in fleets for r in fleet.replicas()]
        pools = [f.variants[variant] for f in fleets if variant in f.variants]
        return None if not pools else [r for pool in pools for r in pool.replicas]

    def _hosting(self, dimensions: Dimensions) -> tuple[int, list[Replica]] | None:
        """A variant that hosts inference components: its instance count and the copies
        on them (its instances run no process of their own); None for any other."""
        endpoint, variant = dimensions.get("EndpointName", ""), dimensions.get("VariantName")
        deployment = self._router.deployments.get(endpoint)
        pool = None if deployment is None or variant is None else deployment.variants.get(variant)
        if pool is None or not pool.components:
            return None
        copies = [
            replica
            for route in list(self._router.components.values())
            if route.endpoint == endpoint and route.variant == variant
            for replica in route.pool.replicas
        ]
        return pool.hosts, copies

    def instances(self, dimensions: Dimensions) -> float | None:
        hosting = self._hosting(dimensions)
        if hosting is not None:
            return float(hosting[0])
        replicas = self.replicas(dimensions)
        return None if replicas is None else float(sum(1 for r in replicas if r.serving))

    def outstanding(self, dimensions: Dimensions) -> float | None:
        replicas = self.replicas(dimensions)
        return None if replicas is None else float(sum(r.outstanding for r in replicas))

    def invocations(self, dimensions: Dimensions) -> float | None:
        if self.replicas(dimensions) is None:
            return None
        endpoint, variant = dimensions.get("EndpointName"), dimensions.get("VariantName")
        total = 0.0
        for family in metrics.INVOCATIONS.collect():
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name.endswith("_total")
                    and labels["endpoint"] == endpoint
                    and (variant is None or labels["variant"] == variant)
                ):
                    total += sample.value
        return total

    def _process(self, replica: Replica) -> psutil.Process | None:
        pid = replica.instance.pid
        if pid is None:
            return None
        process = self._processes.get(pid)
        if process is None:
            # A new instance: forget the ones that have gone meanwhile.
            for gone in [p for p, known in self._processes.items() if not known.is_running()]:
                del self._processes[gone]
            try:
                process = self._processes[pid] = psutil.Process(pid)
                process.cpu_percent()  # the first call only starts the measurement
            except psutil.Error:
                return None
        return process

    def _per_instance(
        self, dimensions: Dimensions, measure: Callable[[Replica], float | None]
    ) -> float | None:
        """Average of a per-instance measure over the variant's running instances; on a
        variant that hosts inference components, its copies' sum over its instances (what
        runs on an instance is its copies)."""
        hosting = self._hosting(dimensions)
        if hosting is not None:
            count, copies = hosting
            used = [value for replica in copies if (value := measure(replica)) is not None]
            return sum(used) / count if used and count else None
        replicas = self.replicas(dimensions)
        if replicas is None:
            return None
        values = [value for replica in replicas if (value := measure(replica)) is not None]
        return sum(values) / len(values) if values else None

    def _remote(self, replica: Replica) -> tuple[ResourceUsage, ResourceUsage] | None:
        """The two latest distinct readings of an instance that runs off this machine
        (no pid; its backend measures it where it runs), or None."""
        usage = replica.instance.usage()
        if usage is None:
            return None
        key = id(replica.instance)
        if key not in self._usages:  # a new instance: forget the ones that have gone
            for gone in [k for k, (known, *_) in self._usages.items() if not known.is_alive()]:
                del self._usages[gone]
        _, previous, latest = self._usages.get(key, (replica.instance, usage, usage))
        if usage.at != latest.at:
            previous, latest = latest, usage
        self._usages[key] = (replica.instance, previous, latest)
        return previous, latest

    def _cpu_percent(self, replica: Replica) -> float | None:
        if replica.instance.pid is None:
            readings = self._remote(replica)
            if readings is None or readings[1].at <= readings[0].at:
                return None
            before, after = readings
            return 100.0 * max(after.cpu_seconds - before.cpu_seconds, 0.0) / (after.at - before.at)
        process = self._process(replica)
        if process is None:
            return None
        try:
            return float(process.cpu_percent())
        except psutil.Error:
            self._processes.pop(process.pid, None)
            return None

    def _memory_percent(self, replica: Replica) -> float | None:
        """Of the whole instance type's memory: an inference component's copy is limited
        to a share of it, but is measured against the instance it takes it from."""
        kind = replica.instance.spec.instance_type
        memory = (get_instance_type(kind.name) or kind).memory_gib * 1024**3
        if replica.instance.pid is None:
            readings = self._remote(replica)
            return None if readings is None else 100.0 * readings[1].rss_bytes / memory
        process = self._process(replica)
        if process is None:
            return None
        try:
            return 100.0 * process.memory_info().rss / memory
        except psutil.Error:
            self._processes.pop(process.pid, None)
            return None

    def cpu_utilization(self, dimensions: Dimensions) -> float | None:
        """Percent of one core, as SageMaker's CPUUtilization (400 = four busy cores)."""
        return self._per_instance(dimensions, self._cpu_percent)

    def memory_utilization(self, dimensions: Dimensions) -> float | None:
        """Resident memory as a percentage of the instance type's memory."""
        return self._per_instance(dimensions, self._memory_percent)


class ComponentState:
    """Readings of an inference component (dimension InferenceComponentName) from its
    route in the router: its copies and the requests sent to it."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def _route(self, dimensions: Dimensions) -> ComponentRoute | None:
        return self._router.components.get(dimensions.get("InferenceComponentName", ""))

    def copies(self, dimensions: Dimensions) -> float | None:
        route = self._route(dimensions)
        return None if route is None else float(len(route.pool.available()))

    def invocations(self, dimensions: Dimensions) -> float | None:
        route = self._route(dimensions)
        return None if route is None else float(route.invocations)

    def outstanding(self, dimensions: Dimensions) -> float | None:
        route = self._route(dimensions)
        return None if route is None else float(sum(r.outstanding for r in route.pool.replicas))


def sagemaker_metrics(window_s: float, router: Router) -> MetricResolver:
    """A resolver with the variant and inference component metrics SageMaker publishes
    and modelhost records."""
    components = ComponentState(router)
    state = VariantState(router)
    resolver = MetricResolver(window_s)
    invocations = PerMinute(state.invocations)
    resolver.register("Invocations", invocations)
    resolver.register("InvocationsPerInstance", PerInstance(invocations, state.instances))
    in_flight = Gauge(state.outstanding)
    resolver.register("ConcurrentRequestsPerModel", PerInstance(in_flight, state.instances))
    resolver.register("CPUUtilization", Gauge(state.cpu_utilization))
    resolver.register("MemoryUtilization", Gauge(state.memory_utilization))
    resolver.register(
        "InvocationsPerCopy", PerInstance(PerMinute(components.invocations), components.copies)
    )
    resolver.register(
        "ConcurrentRequestsPerCopy", PerInstance(Gauge(components.outstanding), components.copies)
    )
    for backlog in (
        "ApproximateBacklogSize",
        "ApproximateBacklogSizePerInstance",
        "HasBacklogWithoutCapacity",
    ):
        resolver.register(backlog, Gauge(functools.partial(_async_backlog, backlog)))
    return resolver


def _async_backlog(name: str, dimensions: Dimensions) -> float | None:
    """An asynchronous endpoint's backlog metric (dimension EndpointName)."""
    return metrics.async_backlog_metric(name, dimensions.get("EndpointName", ""))
