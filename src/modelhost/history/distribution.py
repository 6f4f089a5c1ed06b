"""A statistic set with a percentile sketch: what one period of one metric keeps.

CloudWatch answers SampleCount, Sum, Minimum, Maximum, Average and percentiles (pNN.N)
for any period. The first five merge exactly from count/sum/min/max; percentiles need the
values' distribution, kept here as counts in fixed logarithmic buckets (each bucket is 2 %
wide, so a percentile is within 1 % of a value that was seen, and clamped to [min, max]).
Fixed buckets merge by adding counts, which is how 10 s periods roll up into minutes and
minutes into the period a query asks for, and they cost one `log` per observation on
the hot path (an HDR histogram's Python record is several times that).

Bucket keys are integers that sort as their values do (negative values get negative keys,
zero gets 0), so a merged sketch is ranked by sorting its keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

GAMMA = 1.02
_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
# A magnitude's exponent is clamped to +-_SPAN; +_OFFSET keeps every key of a non-zero
# value away from 0 (zero's key) and its sign the value's.
_SPAN = 20_000
_OFFSET = _SPAN + 1
#: The stored sketch: (key, count) pairs.
SKETCH_DTYPE = np.dtype([("key", "<i4"), ("count", "<f8")])


def key(value: float) -> int:
    if value == 0:
        return 0
    exponent = math.ceil(math.log(abs(value)) * _INV_LOG_GAMMA)
    exponent = max(-_SPAN, min(_SPAN, exponent))
    return exponent + _OFFSET if value > 0 else -(exponent + _OFFSET)


def representative(keys: np.ndarray) -> np.ndarray:
    """The value a bucket stands for: the midpoint of [gamma^(e-1), gamma^e]."""
    exponents = np.abs(keys) - _OFFSET
    magnitude = 2.0 * np.power(GAMMA, exponents.astype(np.float64)) / (GAMMA + 1.0)
    return np.where(keys == 0, 0.0, np.sign(keys) * magnitude)


class Distribution:
    """count / sum / min / max and bucket counts of the values observed in one period."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.count = 0.0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.buckets: dict[int, float] = {}

    def observe(self, value: float, count: float = 1.0) -> None:
        self.count += count
        self.total += value * count
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        k = key(value)
        self.buckets[k] = self.buckets.get(k, 0.0) + count

    def observe_seconds(self, seconds: float) -> None:
        """A latency in seconds, kept in microseconds as SageMaker's latency metrics are
        (the hot path's call: one multiplication, no extra frame)."""
        value = seconds * 1e6
        self.count += 1.0
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value
        if value > 0:
            exponent = math.ceil(math.log(value) * _INV_LOG_GAMMA)
            k = max(-_SPAN, min(_SPAN, exponent)) + _OFFSET
        else:
            k = key(value)
        buckets = self.buckets
        buckets[k] = buckets.get(k, 0.0) + 1.0

    def add_statistics(self, count: float, total: float, minimum: float, maximum: float) -> None:
        """A statistic set without its values (PutMetricData's StatisticValues): exact for
        the five statistics, nothing for percentiles."""
        self.count += count
        self.total += total
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)

    def merge(self, other: Distribution) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        buckets = self.buckets
        for k, c in other.buckets.items():
            buckets[k] = buckets.get(k, 0.0) + c

    def sketch(self) -> bytes:
        items = np.array(sorted(self.buckets.items()), dtype=SKETCH_DTYPE)
        return items.tobytes()

    @classmethod
    def from_row(
        cls, count: float, total: float, minimum: float, maximum: float, sketch: bytes
    ) -> Distribution:
        made = cls()
        made.count, made.total, made.minimum, made.maximum = count, total, minimum, maximum
        for k, c in np.frombuffer(sketch, dtype=SKETCH_DTYPE).tolist():
            made.buckets[int(k)] = float(c)
        return made


def percentiles(
    sketches: Iterable[bytes], quantiles: list[float], minimum: float, maximum: float
) -> list[float | None]:
    """The quantiles (0..1) of the merged sketches, clamped to [minimum, maximum]; None
    when the sketches hold no values (statistic sets only)."""
    joined = np.frombuffer(b"".join(sketches), dtype=SKETCH_DTYPE)
    if not len(joined):
        return [None] * len(quantiles)
    keys, inverse = np.unique(joined["key"], return_inverse=True)
    counts = np.bincount(inverse, weights=joined["count"])
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    if total <= 0:
        return [None] * len(quantiles)
    values = representative(keys)
    answers: list[float | None] = []
    for q in quantiles:
        # The smallest bucket whose cumulative count reaches the rank (nearest rank).
        rank = max(q * total, 1e-12)
        index = int(np.searchsorted(cumulative, rank - 1e-9 * total, side="left"))
        index = min(index, len(values) - 1)
        answers.append(float(min(max(values[index], minimum), maximum)))
    return answers
