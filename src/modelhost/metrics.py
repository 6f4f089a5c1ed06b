"""Prometheus metrics, named after the CloudWatch metrics SageMaker publishes."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

_LABELS = ("endpoint", "variant")
# Sub-millisecond buckets matter: the router's own overhead is measured in them.
_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

INVOCATIONS = Counter(
    "modelhost_invocations", "Invocations answered by a model", _LABELS, registry=REGISTRY
)
INVOCATION_4XX = Counter(
    "modelhost_invocation_4xx_errors", "Invocations answered 4xx", _LABELS, registry=REGISTRY
)
INVOCATION_5XX = Counter(
    "modelhost_invocation_5xx_errors", "Invocations answered 5xx", _LABELS, registry=REGISTRY
)
SHADOW_DROPPED = Counter(
    "modelhost_shadow_dropped",
    "Copies of requests a shadow variant did not get: it already had too many in flight",
    _LABELS,
    registry=REGISTRY,
)
MODEL_LATENCY = Histogram(
    "modelhost_model_latency_seconds",
    "Time the instance took to answer",
    _LABELS,
    buckets=_BUCKETS,
    registry=REGISTRY,
)
OVERHEAD_LATENCY = Histogram(
    "modelhost_overhead_latency_seconds",
    "Time modelhost added on top of the model",
    _LABELS,
    buckets=_BUCKETS,
    registry=REGISTRY,
)


# Adaptive batching, as the model server reports it on each batched answer.
BATCH_SIZE = Histogram(
    "modelhost_batch_size",
    "Requests served by one model call (batching on)",
    _LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
BATCH_QUEUE_WAIT = Histogram(
    "modelhost_batch_queue_wait_seconds",
    "Time a request waited in its instance's batch queue before its model call",
    _LABELS,
    buckets=_BUCKETS,
    registry=REGISTRY,
)


class VariantMetrics:
    """The labelled series of one (endpoint, variant), looked up once: `labels()` on every
    request is a measurable share of the router's CPU."""

    __slots__ = (
        "batch_size",
        "endpoint",
        "history_model",
        "history_overhead",
        "invocations",
        "model_latency",
        "overhead_latency",
        "queue_wait",
        "variant",
    )

    def __init__(self, endpoint: str, variant: str) -> None:
        self.endpoint, self.variant = endpoint, variant
        # Set by the metrics history while it records: each hears every latency (in
        # seconds) as the histogram does, for the min/max/percentiles it keeps (a list's
        # append: the hot path's share is one C call).
        self.history_model: Callable[[float], None] | None = None
        self.history_overhead: Callable[[float], None] | None = None
        self.invocations = INVOCATIONS.labels(endpoint, variant)
        self.model_latency = MODEL_LATENCY.labels(endpoint, variant)
        self.overhead_latency = OVERHEAD_LATENCY.labels(endpoint, variant)
        self.batch_size = BATCH_SIZE.labels(endpoint, variant)
        self.queue_wait = BATCH_QUEUE_WAIT.labels(endpoint, variant)

    def answered(self, model_seconds: float, batch: tuple[int, float] | None) -> None:
        """One answer from a model: its latency and, when it was batched, its batch."""
        self.invocations.inc()
        self.model_latency.observe(model_seconds)
        if self.history_model is not None:
            self.history_model(model_seconds)
        if batch is not None:
            size, queue_wait_s = batch
            self.queue_wait.observe(queue_wait_s)
            if size:
                self.batch_size.observe(size)

    def overhead(self, seconds: float) -> None:
        """The time modelhost added to one answer."""
        self.overhead_latency.observe(seconds)
        if self.history_overhead is not None:
            self.history_overhead(seconds)


_VARIANTS: dict[tuple[str, str], VariantMetrics] = {}
#: Called with each (endpoint, variant)'s series when it is first made: the metrics
#: history attaches its observers there (see `variants` for the ones made before).
on_new_variant: Callable[[VariantMetrics], None] | None = None


def for_variant(endpoint: str, variant: str) -> VariantMetrics:
    found = _VARIANTS.get((endpoint, variant))
    if found is None:
        found = _VARIANTS[(endpoint, variant)] = VariantMetrics(endpoint, variant)
        if on_new_variant is not None:
            on_new_variant(found)
    return found


def variants() -> list[VariantMetrics]:
    return list(_VARIANTS.values())


INSTANCES = Gauge("modelhost_instances", "Running instances", _LABELS, registry=REGISTRY)
INSTANCE_SECONDS = Counter(
    "modelhost_instance_seconds",
    "Running time of instances, for cost",
    (*_LABELS, "instance_type"),
    registry=REGISTRY,
)
INSTANCE_COST = Counter(
    "modelhost_instance_cost_usd",
    "Running time priced at the instance type's hourly list price",
    (*_LABELS, "instance_type"),
    registry=REGISTRY,
)
INSTANCE_REPLACEMENTS = Counter(
    "modelhost_instance_replacements",
    "Instances replaced after they died",
    _LABELS,
    registry=REGISTRY,
)

# Asynchronous inference backlog, by the CloudWatch names autoscaling policies use.
ASYNC_BACKLOG = Gauge(
    "modelhost_async_backlog_size",
    "ApproximateBacklogSize: async requests queued or being processed",
    ("endpoint",),
    registry=REGISTRY,
)
ASYNC_BACKLOG_PER_INSTANCE = Gauge(
    "modelhost_async_backlog_size_per_instance",
    "ApproximateBacklogSizePerInstance",
    ("endpoint",),
    registry=REGISTRY,
)
ASYNC_BACKLOG_WITHOUT_CAPACITY = Gauge(
    "modelhost_async_has_backlog_without_capacity",
    "HasBacklogWithoutCapacity: 1 when requests wait and no instance runs",
    ("endpoint",),
    registry=REGISTRY,
)
_ASYNC_METRICS = {
    "ApproximateBacklogSize": "modelhost_async_backlog_size",
    "ApproximateBacklogSizePerInstance": "modelhost_async_backlog_size_per_instance",
    "HasBacklogWithoutCapacity": "modelhost_async_has_backlog_without_capacity",
}


def async_backlog_metric(metric_name: str, endpoint: str) -> float | None:
    """The current value of an async backlog metric by its CloudWatch name (dimension
    EndpointName), for the autoscaling policies; None for another metric or an endpoint
    that has not been measured."""
    series = _ASYNC_METRICS.get(metric_name)
    if series is None:
        return None
    return REGISTRY.get_sample_value(series, {"endpoint": endpoint})


# Serverless variants, after SageMaker's serverless CloudWatch metrics.
SERVERLESS_COLD_STARTS = Counter(
    "modelhost_serverless_cold_starts",
    "Instances started because requests arrived and none was free",
    _LABELS,
    registry=REGISTRY,
)
MODEL_SETUP_TIME = Histogram(
    "modelhost_model_setup_time_seconds",
    "Time to start a serverless instance until it answers /ping (SageMaker's ModelSetupTime)",
    _LABELS,
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)
SERVERLESS_CONCURRENCY = Gauge(
    "modelhost_serverless_concurrency",
    "Requests in flight (waiting or running) on a serverless variant",
    _LABELS,
    registry=REGISTRY,
)
SERVERLESS_THROTTLES = Counter(
    "modelhost_serverless_throttles",
    "Requests refused past MaxConcurrency",
    _LABELS,
    registry=REGISTRY,
)
SERVERLESS_GB_SECONDS = Counter(
    "modelhost_serverless_billed_gb_seconds",
    "Billed duration of serverless invocations times memory",
    _LABELS,
    registry=REGISTRY,
)
SERVERLESS_COST = Counter(
    "modelhost_serverless_cost_usd",
    "Billed GB-seconds at the serverless list price",
    _LABELS,
    registry=REGISTRY,
)

# Multi-model endpoints, per instance, after SageMaker's multi-model CloudWatch metrics
# (ModelLoadingWaitTime, ModelLoadingTime, ModelCacheHit, LoadedModelCount): the CloudWatch
# name is the Prometheus name in CamelCase without the prefix and unit.
_INSTANCE_LABELS = ("endpoint", "variant", "instance")
_LOAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MODEL_LOADING_WAIT_TIME = Histogram(
    "modelhost_model_loading_wait_time_seconds",
    "Time a request for a model not loaded waited for it to be unpacked and loaded",
    _INSTANCE_LABELS,
    buckets=_LOAD_BUCKETS,
    registry=REGISTRY,
)
MODEL_LOADING_TIME = Histogram(
    "modelhost_model_loading_time_seconds",
    "Time the instance took to load a model (POST /models)",
    _INSTANCE_LABELS,
    buckets=_LOAD_BUCKETS,
    registry=REGISTRY,
)
MODEL_CACHE_HIT = Counter(
    "modelhost_model_cache_hit",
    "Requests whose model was already loaded on the instance (ModelCacheHit's Sum)",
    _INSTANCE_LABELS,
    registry=REGISTRY,
)
MODEL_CACHE_LOOKUPS = Counter(
    "modelhost_model_cache_lookups",
    "Requests to a multi-model instance (ModelCacheHit's SampleCount)",
    _INSTANCE_LABELS,
    registry=REGISTRY,
)
MODEL_UNLOADS = Counter(
    "modelhost_model_unloads",
    "Models unloaded to make room for another",
    _INSTANCE_LABELS,
    registry=REGISTRY,
)
LOADED_MODEL_COUNT = Gauge(
    "modelhost_loaded_model_count",
    "Models loaded on the instance",
    _INSTANCE_LABELS,
    registry=REGISTRY,
)
PER_INSTANCE_MODEL_METRICS = (
    MODEL_LOADING_WAIT_TIME,
    MODEL_LOADING_TIME,
    MODEL_CACHE_HIT,
    MODEL_CACHE_LOOKUPS,
    MODEL_UNLOADS,
    LOADED_MODEL_COUNT,
)
