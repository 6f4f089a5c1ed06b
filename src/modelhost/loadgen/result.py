"""What a load test measured: every latency in an HDR histogram, errors by code, and a
per-second timeline.

Latencies are recorded in microseconds in an HdrHistogram (3 significant digits, 1 µs to
10 minutes), so percentiles are exact to 0.1% however many requests ran, in constant
memory. Each second of the run also keeps its own coarser histogram (2 digits) for the
timeline: callers that search for the highest rate meeting a latency bound, or watch an
autoscaler react, need latency over time, not only the overall figure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

_HIGHEST_US = 600 * 1_000_000


def new_histogram(digits: int = 3) -> HdrHistogram:
    return HdrHistogram(1, _HIGHEST_US, digits)


def _ms(histogram: HdrHistogram, percentile: float) -> float:
    if histogram.get_total_count() == 0:
        return 0.0
    return histogram.get_value_at_percentile(percentile) / 1000.0


@dataclass(slots=True)
class Second:
    """One second of the run, counted from its start. `sent`: requests put on the wire in
    that second; `completed`, `errors` and the latencies: answers that arrived in it."""

    second: int
    scheduled: int = 0
    sent: int = 0
    completed: int = 0
    errors: int = 0
    histogram: HdrHistogram = field(default_factory=lambda: new_histogram(2), repr=False)

    @property
    def p50_ms(self) -> float:
        return _ms(self.histogram, 50)

    @property
    def p95_ms(self) -> float:
        return _ms(self.histogram, 95)

    @property
    def p99_ms(self) -> float:
        return _ms(self.histogram, 99)

    def to_json(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "completed": self.completed,
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "histogram": self.histogram.encode().decode(),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Second:
        return cls(
            raw["second"],
            raw["scheduled"],
            raw["sent"],
            raw["completed"],
            raw["errors"],
            HdrHistogram.decode(raw["histogram"].encode()),
        )


@dataclass(slots=True)
class LoadResult:
    """Everything one run measured. Latency covers successful answers only (2xx/3xx);
    `errors` counts the rest by HTTP status, or `timeout` / `connection`."""

    mode: str
    duration_s: float
    histogram: HdrHistogram = field(default_factory=new_histogram, repr=False)
    errors: Counter[str] = field(default_factory=Counter)
    timeline: list[Second] = field(default_factory=list)
    scheduled: int = 0
    sent: int = 0

    @property
    def completed(self) -> int:
        """Successful answers."""
        return int(self.histogram.get_total_count())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful answers per second over the whole run."""
        return self.completed / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, percentile: float) -> float:
        return _ms(self.histogram, percentile)

    @property
    def max_ms(self) -> float:
        return self.histogram.get_max_value() / 1000.0 if self.completed else 0.0

    def summary(self) -> dict[str, Any]:
        """The headline figures, flat, for tables and JSON."""
        return {
            "mode": self.mode,
            "duration_s": round(self.duration_s, 3),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "completed": self.completed,
            "errors": self.error_count,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "max_ms": self.max_ms,
            "errors_by_code": dict(self.errors),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "histogram": self.histogram.encode().decode(),
            "timeline": [second.to_json() for second in self.timeline],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LoadResult:
        summary = raw["summary"]
        return cls(
            mode=summary["mode"],
            duration_s=summary["duration_s"],
            histogram=HdrHistogram.decode(raw["histogram"].encode()),
            errors=Counter(summary["errors_by_code"]),
            timeline=[Second.from_json(s) for s in raw["timeline"]],
            scheduled=summary["scheduled"],
            sent=summary["sent"],
        )
