"""Confidence intervals over replications of a run.

A replication is the same workload and strategy run with another seed. Its
metrics are one sample each, so the mean of N replications comes with a
Student-t 95% interval (the population variance is unknown and N is small,
typically 3 to 10; a normal interval would be too narrow there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float | None  # None: one sample gives no interval
    high: float | None
    n: int
    sd: float | None = None  # sample standard deviation; None: one sample

    @property
    def half(self) -> float | None:
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2


def ci95(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean, sample standard deviation and Student-t 95% interval of the mean.

    ``values`` is a sequence or a 1-D numpy array. Sums are exact
    (:func:`math.fsum`), so the result does not depend on the order or the
    grouping of the values, and replications and sweeps report the same
    figures for the same samples. One value gives no spread to estimate:
    ``sd``, ``low`` and ``high`` are None rather than a zero-width interval
    that would look like certainty.
    """
    xs = np.asarray(values, dtype=float).tolist()
    n = len(xs)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(xs) / n
    if n < 2:
        return Interval(mean, None, None, n)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


def t_quantile(df: int) -> float:
    """Two-sided Student-t quantile at CONFIDENCE for ``df`` degrees of freedom."""
    # scipy.stats costs about a second to import: only runs with
    # replications need it, so it is not paid by every `simcore run`
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def overlap(a: Interval, b: Interval) -> bool:
    """Whether two intervals share a point; False when either has none.

    Overlapping 95% intervals do not prove the means equal, but when they
    overlap the data do not show a difference at that level, which is what a
    reader of a comparison table needs flagged.
    """
    if None in (a.low, a.high, b.low, b.high):
        return False
    return a.low <= b.high and b.low <= a.high  # type: ignore[operator]


def replication_seeds(seed: int, n: int) -> list[int]:
    """Seeds of ``n`` replications of a run whose workload seed is ``seed``.

    Replication ``i`` runs with ``SeedSequence(seed).generate_state(n)[i]``
    (32-bit words). The words do not depend on ``n``, so asking for more
    replications later keeps the first ones and their results.
    """
    words = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    return [int(w) for w in words]
