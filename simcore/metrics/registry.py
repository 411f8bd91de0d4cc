"""Collecting metrics during one simulation.

Counters are plain dict entries (an increment is one dict update on the hot
path), latencies go to constant-memory histograms, and CPU time is split by
what it was spent on so ``cpu.overhead_pct`` can say what share went to
page walks, shootdowns and lock waiting.
"""

from __future__ import annotations

from collections import defaultdict

from simcore.metrics.histogram import Histogram

# Kinds of CPU time that count as overhead in cpu.overhead_pct.
OVERHEAD_KINDS = ("pagewalk", "shootdown", "lock_spin", "pti", "int3", "kprobe")
# Whose code or data a TLB touch is, for the attributed TLB metrics
# (itlb.misses.<owner>, ...), as perf reports iTLB misses per symbol.
OWNERS = ("bpf", "modules", "kernel", "user", "arena")


class Metrics:
    def __init__(self) -> None:
        self.counters: defaultdict[str, float] = defaultdict(int)
        self.hists: dict[str, Histogram] = {}
        self.cpu_ns: defaultdict[str, int] = defaultdict(int)
        self.series: list[tuple[int, dict[str, float]]] = []
        self.series_keys: list[str] = []

    def inc(self, name: str, by: float = 1) -> None:
        self.counters[name] += by

    def latency(self, op: str, ns: int) -> None:
        h = self.hists.get(op)
        if h is None:
            h = self.hists[op] = Histogram()
        h.add(ns)

    def cpu_time(self, kind: str, ns: int) -> None:
        self.cpu_ns[kind] += ns

    def sample(self, now: int, extra: dict[str, float]) -> None:
        row = {k: self.counters.get(k, 0) for k in self.series_keys}
        row.update(extra)
        self.series.append((now, row))

    def snapshot(self, *, duration_ns: int, cpus: int) -> dict[str, float]:
        """Final metric values, dotted names, sorted, JSON-ready."""
        out: dict[str, float] = {}
        for k, v in self.counters.items():
            out[k] = clean(v)
        for op, h in self.hists.items():
            base = f"alloc.{op}.latency_ns"
            out[f"{base}.p50"] = clean(h.percentile(50))
            out[f"{base}.p99"] = clean(h.percentile(99))
            out[f"{base}.mean"] = clean(h.mean)
            out[f"alloc.{op}.count"] = h.n
        instr = self.counters.get("cpu.instructions", 0)
        if instr:
            for side in ("itlb", "dtlb"):
                misses = self.counters.get(f"{side}.misses", 0)
                out[f"{side}.mpki"] = clean(1000.0 * misses / instr)
        capacity = duration_ns * cpus
        lost = sum(self.cpu_ns.get(k, 0) for k in OVERHEAD_KINDS)
        out["cpu.overhead_pct"] = clean(100.0 * lost / capacity if capacity else 0.0)
        for kind, ns in self.cpu_ns.items():
            out[f"cpu.{kind}_ns"] = ns
        return dict(sorted(out.items()))


def clean(v: float) -> float:
    """Ints stay ints; floats are rounded so JSON stays readable."""
    if isinstance(v, int) or float(v).is_integer():
        return int(v)
    return round(float(v), 6)
