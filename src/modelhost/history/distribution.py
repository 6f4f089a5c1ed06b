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
from collections.abc import Sequence

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

    @classmethod
    def of_seconds(cls, seconds: Sequence[float]) -> Distribution:
        """Latencies in seconds, kept in microseconds as SageMaker's latency metrics are;
        with numpy, for the many a flush collects (off the event loop)."""
        values = np.asarray(seconds, dtype=np.float64) * 1e6
        made = cls()
        if not len(values):
            return made
        made.count = float(len(values))
        made.total = float(values.sum())
        made.minimum = float(values.min())
        made.maximum = float(values.max())
        positive = values > 0
        # Latencies never come near the clamped span: the positive keys need no clamp.
        keys = np.where(
            positive,
            np.ceil(np.log(np.where(positive, values, 1.0)) * _INV_LOG_GAMMA) + _OFFSET,
            0,
        ).astype(np.int64)
        unique, counts = np.unique(keys, return_counts=True)
        made.buckets = dict(zip(unique.tolist(), counts.astype(np.float64).tolist(), strict=True))
        return made

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


_SHIFT = _OFFSET + _SPAN  # keys + _SHIFT are >= 0
_WIDTH = 2 * _SHIFT + 1
# Above this many (period, bucket) cells, percentiles sort the buckets instead.
_DENSE_CELLS = 4_000_000


def percentiles(
    owners: np.ndarray, sketches: Sequence[bytes], periods: int, quantiles: Sequence[float]
) -> np.ndarray:
    """The quantiles (0..1) of each period's merged sketches, in one pass over all of
    them: sketch i belongs to period owners[i]. An array of shape (periods, quantiles),
    NaN where a period holds no values (none, or statistic sets only). The caller clamps
    to the period's minimum and maximum."""
    answer = np.full((periods, len(quantiles)), np.nan)
    if not len(sketches) or not periods:
        return answer
    lengths = np.fromiter(map(len, sketches), np.int64, len(sketches)) // SKETCH_DTYPE.itemsize
    owners = np.repeat(np.asarray(owners, dtype=np.int64), lengths)
    joined = np.frombuffer(b"".join(sketches), dtype=SKETCH_DTYPE)
    keys = joined["key"].astype(np.int64)
    low = int(keys.min()) if len(keys) else 0
    width = (int(keys.max()) - low + 1) if len(keys) else 1
    weights = np.ascontiguousarray(joined["count"])  # unaligned in the record: copied once
    if periods * width <= _DENSE_CELLS:
        # Latencies span a few hundred buckets: a dense (bucket, period) grid needs no sort.
        # Buckets down the rows: numpy accumulates down axis 0 a whole row at a time,
        # quicker than along axis 1 one short row at a time; the sums are the same.
        grid = np.bincount(
            (keys - low) * periods + owners, weights=weights, minlength=periods * width
        ).reshape(width, periods)
        cumulative = np.cumsum(grid, axis=0)
        totals = cumulative[-1]
        has = totals > 0
        values = representative(np.arange(low, low + width))
        for column, q in enumerate(quantiles):
            rank = np.maximum(q * totals, 1e-12) - 1e-9 * totals
            position = np.argmax(cumulative >= rank, axis=0)
            answer[has, column] = values[position[has]]
        return answer
    combined = owners * _WIDTH + (keys + _SHIFT)
    unique, inverse = np.unique(combined, return_inverse=True)
    counts = np.bincount(inverse, weights=weights)
    period_of = unique // _WIDTH
    values = representative(unique % _WIDTH - _SHIFT)
    flat = np.cumsum(counts)
    index = np.arange(periods)
    starts = np.searchsorted(period_of, index, side="left")
    ends = np.searchsorted(period_of, index, side="right")
    before = np.where(starts > 0, flat[starts - 1], 0.0)
    totals = np.where(ends > starts, flat[np.maximum(ends - 1, 0)] - before, 0.0)
    has = totals > 0
    for column, q in enumerate(quantiles):
        # Nearest rank: the first bucket whose cumulative count reaches q of the period.
        rank = before + np.maximum(q * totals, 1e-12) - 1e-9 * totals
        position = np.minimum(np.searchsorted(flat, rank, side="left"), ends - 1)
        answer[has, column] = values[position[has]]
    return answer
