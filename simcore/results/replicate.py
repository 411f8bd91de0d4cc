"""``simcore run --replications N``: the same comparison under N seeds.

One run says what happened with one seed; an RFC reply wants to know
whether a difference survives another seed. Replication ``i`` reloads the
workload with seed ``replication_seeds(seed, N)[i]`` and runs every
strategy, so within a replication the strategies still share their random
streams. The results folder then holds the means (``metrics.json``
``strategies``, ``timeseries.csv``, ``latency.csv``) and, under
``replications``, every replication's value with a Student-t 95% interval.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from simcore.metrics import RunResult, clean
from simcore.results.stats import ci95


@dataclass
class Replicated:
    seeds: list[int]
    runs: list[list[RunResult]]  # runs[i]: every strategy under seeds[i]

    @property
    def strategies(self) -> list[str]:
        return [r.strategy for r in self.runs[0]]

    def _per_strategy(self, name: str) -> list[RunResult]:
        return [next(r for r in run if r.strategy == name) for run in self.runs]

    def doc(self) -> dict:
        """metrics.json ``replications``: strategy -> metric -> interval."""
        out: dict[str, dict] = {}
        for s in self.strategies:
            reps = self._per_strategy(s)
            names = sorted({k for r in reps for k in r.metrics})
            out[s] = {}
            for k in names:
                # a counter a replication never touched is absent, not 0:
                # averaging over the replications that have it is what
                # percentile metrics need, and counters are always set
                values = [r.metrics[k] for r in reps if k in r.metrics]
                iv = ci95(values)
                out[s][k] = {
                    "mean": clean(iv.mean),
                    "ci95_low": None if iv.low is None else round(iv.low, 6),
                    "ci95_high": None if iv.high is None else round(iv.high, 6),
                    "n": iv.n,
                    "values": values,
                }
        return out

    def merged(self) -> list[RunResult]:
        """One RunResult per strategy holding the means over replications."""
        out = []
        doc = self.doc()
        for s in self.strategies:
            reps = self._per_strategy(s)
            metrics = {k: v["mean"] for k, v in doc[s].items()}
            out.append(
                RunResult(
                    strategy=s,
                    metrics=metrics,
                    series=_mean_series(reps),
                    wall_s=sum(r.wall_s for r in reps),
                    events=sum(r.events for r in reps),
                    latency_cdfs=_pooled_cdfs(reps),
                )
            )
        return out


def _mean_series(reps: list[RunResult]) -> list[tuple[int, dict[str, float]]]:
    # every replication samples at the same simulated times (duration and
    # sample count come from the config), so rows line up by time
    acc: dict[int, defaultdict[str, list[float]]] = {}
    for r in reps:
        for t, row in r.series:
            slot = acc.setdefault(t, defaultdict(list))
            for k, v in row.items():
                slot[k].append(v)
    return [
        (t, {k: clean(sum(v) / len(v)) for k, v in sorted(acc[t].items())})
        for t in sorted(acc)
    ]


def _pooled_cdfs(reps: list[RunResult]) -> dict[str, list[tuple[float, float]]]:
    """Latency CDFs of all replications as one distribution.

    Every run's histogram uses the same bucket edges, so the pooled CDF is
    exact: each replication's bucket masses, weighted by its operation
    count, summed.
    """
    ops = sorted({op for r in reps for op in r.latency_cdfs})
    out = {}
    for op in ops:
        mass: defaultdict[float, float] = defaultdict(float)
        total = 0.0
        for r in reps:
            n = float(r.metrics.get(f"alloc.{op}.count", 0))
            prev = 0.0
            for edge, cum in r.latency_cdfs.get(op, []):
                mass[edge] += (cum - prev) * n
                prev = cum
            total += n
        if not total:
            continue
        pts, seen = [], 0.0
        for edge in sorted(mass):
            seen += mass[edge]
            pts.append((edge, min(1.0, seen / total)))
        out[op] = pts
    return out
