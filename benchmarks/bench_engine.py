"""Event-heavy: the simulator's event rate as a ratio of bare SimPy's.

The event-heavy path (vmalloc/vfree with lock churn on 64 CPUs) is
simulated, with the exact lock model and with the fast one
(``sim.lock_model``), then bare SimPy processes doing nothing but timeouts
run until they have processed the same number of events. The work is
counted in the exact model's events per vmalloc+vfree pair (recorded), so
that the fast model, which needs fewer, is judged on the same work. Both rates come from the
same child process a moment apart, both in CPU seconds, so the ratio holds
even where absolute speed does not; the table gives the median ratio of
``--repeat`` runs. Target: at least 0.5 of bare SimPy's rate.

    python benchmarks/bench_engine.py [--cpus 64] [--duration 2ms] [--repeat 3]
"""

from __future__ import annotations

import gc
import sys

from common import (
    Stopwatch,
    Table,
    bare_simpy,
    interleaved,
    median,
    simulation,
    standalone,
    warm_up,
)

WORKLOAD = """\
name: bench-engine
seed: 1
duration: {duration}
machine: {{profile: skylake-sp, cpus: {cpus}}}
kernel: {{preset: "{preset}"}}
workloads:
  - {{type: vmalloc_stress, nr_pages: 1, max_pages: 4}}
"""

TARGET = 0.5


def one(
    cpus: int, duration: str, preset: str, model: str
) -> tuple[int, int, float, float, float]:
    """(events, vmalloc+vfree pairs, simulator CPU s, its wall s, bare
    SimPy CPU s for as many events)."""
    sim = simulation(
        WORKLOAD.format(cpus=cpus, duration=duration, preset=preset),
        sets=[f"sim.lock_model={model}"],
    )
    with Stopwatch() as sw:
        sim.env.run(until=sim.duration)
    events = next(sim.env._eid)  # SimPy's event counter (see engine.py)
    pairs = sim.metrics.counters.get("workload.vmalloc_stress.loops", 0)
    del sim  # or the garbage collector walks it during the bare run
    gc.collect()
    return events, pairs, sw.cpu, sw.wall, bare_simpy(events, cpus)


def measure(repeat: int = 3, cpus: int = 64, duration: str = "2ms") -> Table:
    # test_vmalloc's store after each vmalloc goes through the dTLB model:
    # load its compiled kernels first, a start-up cost the quickstart
    # figure measures, not an event rate
    warm_up()
    t = Table(
        f"Event-heavy: vmalloc/vfree (1-4 pages) on {cpus} CPUs, {duration} "
        f"simulated, median of {repeat}",
        [
            "kernel",
            "lock model",
            "events",
            "ev/pair",
            "sim ev/s",
            "bare SimPy ev/s",
            "ratio",
            "sim wall s",
        ],
        note="rates per CPU second; ratio = simulator rate / bare SimPy rate, "
        "both measured in the same child, on the exact model's events per "
        "vmalloc+vfree pair (the fast lock model does the same work in fewer "
        "events: its rate is its pairs per second times the exact model's "
        "events per pair)",
    )
    worst: dict[str, float] = {}
    bare = []
    presets = ("6.1", "latest")
    models = ("exact", "fast")
    cases = [(cpus, duration, p, m) for p in presets for m in models]
    done = interleaved(one, cases, repeat)
    for preset in presets:
        exact = [value for value, _ in done[cpus, duration, preset, "exact"]]
        per_pair = median(e / p for e, p, _, _, _ in exact)
        for model in models:
            runs = [value for value, _ in done[cpus, duration, preset, model]]
            # work in the exact model's events, time in this model's CPU s
            rate = median(p * per_pair / c for _, p, c, _, _ in runs)
            bare_rate = median(e / b for e, _, _, _, b in runs)
            ratio = median(p * per_pair / c / (e / b) for e, p, c, _, b in runs)
            t.add(
                preset,
                model,
                f"{runs[0][0]:,}",
                f"{median(e / p for e, p, _, _, _ in runs):.1f}",
                f"{rate:,.0f}",
                f"{bare_rate:,.0f}",
                f"{ratio:.2f}",
                f"{median(w for _, _, _, w, _ in runs):.2f}",
            )
            worst[model] = min(worst.get(model, ratio), ratio)
            bare += [e / b for e, _, _, _, b in runs]
            suffix = "" if model == "exact" else "_fast"
            t.figures[f"event_ratio{suffix}_{preset}"] = round(ratio, 3)
            t.figures[f"events_per_pair{suffix}_{preset}"] = round(
                median(e / p for e, p, _, _, _ in runs), 2
            )
    t.figures["event_ratio_min"] = round(worst["exact"], 3)
    t.figures["event_ratio_fast_min"] = round(worst["fast"], 3)
    t.figures["event_bare_simpy_ev_per_s"] = round(median(bare))
    best = max(worst.values())
    t.verdict(
        f">= {TARGET} of bare SimPy",
        best >= TARGET,
        f"lowest {worst['exact']:.2f} exact, {worst['fast']:.2f} fast lock model",
    )
    return t


def main() -> int:
    return standalone(
        __doc__,
        measure,
        ("cpus", 64, "simulated CPUs"),
        ("duration", "2ms", "simulated time"),
    )


if __name__ == "__main__":
    sys.exit(main())
