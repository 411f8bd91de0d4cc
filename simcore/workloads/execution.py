"""Running code at a rate: the batched execution shared by generators.

DESIGN section 6: a CPU runs one ``kernel.quantum`` of work, the page touches
of everything it ran in that quantum go through its TLB model in one
``kernel.executor.run()`` call, and flushes take effect between quanta. A
generator supplies what one event touches; this module draws how many
events each quantum holds (Poisson at the configured rate), which objects
they hit (a popularity law over objects in rank order), and batches the
touches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from simcore.dists import Popularity

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# x86-64 instructions average about 4 bytes: an estimate used to turn bytes
# run into the instructions behind *.mpki (every generator uses this one).
INSN_BYTES = 4.0
# popularity tables cached per object count; churn changes the count all
# the time, so the cache is bounded
_CDF_CACHE_MAX = 64


class Picker:
    """Draws which of ``n`` objects (in rank order) each event hits."""

    def __init__(self, popularity: Popularity) -> None:
        self.popularity = popularity
        self._cdf: dict[int, np.ndarray] = {}

    def cdf(self, n: int) -> np.ndarray:
        cdf = self._cdf.get(n)
        if cdf is None:
            if len(self._cdf) > _CDF_CACHE_MAX:
                self._cdf.clear()
            cdf = self._cdf[n] = np.cumsum(self.popularity.weights(n))
            # rounding may leave the sum just below 1: an infinite last
            # bound sends such draws to the last object, as clamping the
            # picks would, without a pass over them every quantum
            cdf[-1] = np.inf
        return cdf

    @classmethod
    def fixed(cls, weights) -> Picker:
        """Events spread over ``len(weights)`` objects by their weights,
        not by rank (``pick`` with that ``n``)."""
        self = cls(Popularity())
        w = np.asarray(weights, dtype=np.float64)
        cdf = np.cumsum(w / w.sum())
        cdf[-1] = np.inf
        self._cdf[len(w)] = cdf
        return self

    def pick(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        """Positions (int64, in ``range(n)``, ``n`` > 0) of ``k`` events."""
        return self.cdf(n).searchsorted(rng.random(k), side="right")


def batch(pieces: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Page addresses and their mapping shifts, one array each."""
    if not pieces:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint8)
    addrs = np.concatenate([a for a, _ in pieces])
    shifts = np.concatenate([np.full(len(a), s, np.uint8) for a, s in pieces])
    return addrs, shifts


def run_pieces(
    kernel: Kernel,
    cpu: int,
    pieces: Sequence[tuple[np.ndarray, int]],
    nbytes: float,
    side: str = "i",
    owner: str = "kernel",
) -> int:
    """Touch every piece on ``cpu``; ``nbytes`` of code ran (or data was
    used alongside ``nbytes`` of code) on behalf of ``owner`` (bpf,
    modules, kernel, user, arena). Returns the ns the misses cost."""
    addrs, shifts = batch(pieces)
    insns = int(nbytes / INSN_BYTES)
    return kernel.executor.run(cpu, addrs, shifts, side, insns, owner=owner)


def exp_ns(rng: np.random.Generator, mean: float) -> int:
    """An exponential gap or lifetime of ``mean`` ns, at least 1 ns (a
    Poisson process's next event, or a memoryless object's life)."""
    return max(1, int(rng.exponential(mean)))


def at_rate(
    kernel: Kernel,
    cpu: int,
    rng: np.random.Generator,
    rate: float,
    step: Callable[[int, int], None],
):
    """Every quantum on ``cpu``, ``step(cpu, k)`` for the k ~ Poisson
    events that fall in it (``rate`` per second); quanta without events
    cost nothing but their timeout."""
    env = kernel.env
    quantum = kernel.quantum
    per_quantum = rate * quantum / 1e9
    while True:
        yield env.timeout(quantum)
        k = int(rng.poisson(per_quantum))
        if k:
            step(cpu, k)


def exec_cpus(kernel: Kernel, cpus: int | None) -> range:
    """The CPUs an execution setting names: the first ``cpus``, or all."""
    return range(min(cpus or kernel.nr_cpus, kernel.nr_cpus))
