"""Latency histogram with constant memory and ~3% bucket precision.

Percentiles of allocation latency must not cost memory proportional to the
number of operations (a long run does millions), so samples go into
log-linear buckets, the same idea as HdrHistogram: values below 64 ns are
exact, above that each power of two is split into 32 buckets.
"""

from __future__ import annotations

_SUB = 32
_EXACT = 2 * _SUB  # values below this get their own bucket


def _index(v: int) -> int:
    if v < _EXACT:
        return v
    shift = v.bit_length() - 6
    return _EXACT + (shift - 1) * _SUB + ((v >> shift) - _SUB)


def _lower(idx: int) -> int:
    if idx < _EXACT:
        return idx
    shift, sub = divmod(idx - _EXACT, _SUB)
    shift += 1
    return (sub + _SUB) << shift


def _width(idx: int) -> int:
    if idx < _EXACT:
        return 1
    return 1 << ((idx - _EXACT) // _SUB + 1)


class Histogram:
    __slots__ = ("counts", "n", "total", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def add(self, value: int) -> None:
        v = int(value) if value > 0 else 0
        i = _index(v)
        self.counts[i] = self.counts.get(i, 0) + 1
        if self.n == 0 or v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        self.n += 1
        self.total += v

    def percentile(self, q: float) -> float:
        """Midpoint of the bucket holding the q-th percentile (0 < q <= 100)."""
        if self.n == 0:
            return 0.0
        rank = max(1, -(-self.n * q // 100))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                mid = _lower(i) + (_width(i) - 1) / 2
                return float(min(max(mid, self.min), self.max))
        return float(self.max)  # pragma: no cover - rank <= n always

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def cdf(self) -> list[tuple[float, float]]:
        """(value, cumulative fraction) at each occupied bucket's upper edge."""
        out, seen = [], 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            out.append((float(_lower(i) + _width(i) - 1), seen / self.n))
        return out
