"""What every control-plane operation needs: settings, the state store, a way to wake
the controllers after desired state changed, the metrics autoscaling can track, and the
metric history."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from modelhost.config import Settings
from modelhost.history import MetricStore
from modelhost.storage import StateStore


@dataclass
class Context:
    settings: Settings
    store: StateStore
    notify: Callable[[], None] = lambda: None
    # Metric names scaling policies may track (the autoscaling metric resolver).
    scaling_metrics: Collection[str] = frozenset()
    # The metric history CloudWatch's metric operations read and write (None: off).
    history: MetricStore | None = None

    def arn(self, resource: str, name: str) -> str:
        """SageMaker ARNs carry the resource name in lower case."""
        s = self.settings
        return f"arn:aws:sagemaker:{s.region}:{s.account_id}:{resource}/{name.lower()}"

    @staticmethod
    def now() -> float:
        """Milliseconds, as SageMaker reports them: a time a client reads back and sends
        as CreationTimeBefore must compare exactly, with no sub-microsecond rounding."""
        return round(time.time(), 3)
