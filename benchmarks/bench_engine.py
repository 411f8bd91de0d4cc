"""Event-heavy: the simulator's event rate as a ratio of bare SimPy's.

The event-heavy path (vmalloc/vfree with lock churn on 64 CPUs) is
simulated, then bare SimPy processes doing nothing but timeouts run until
they have processed the same number of events. Both rates come from the
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


def one(cpus: int, duration: str, preset: str) -> tuple[int, float, float, float]:
    """(events, simulator CPU s, its wall s, bare SimPy CPU s for as many
    events)."""
    sim = simulation(WORKLOAD.format(cpus=cpus, duration=duration, preset=preset))
    with Stopwatch() as sw:
        sim.env.run(until=sim.duration)
    events = next(sim.env._eid)  # SimPy's event counter (see engine.py)
    del sim  # or the garbage collector walks it during the bare run
    gc.collect()
    return events, sw.cpu, sw.wall, bare_simpy(events, cpus)


def measure(repeat: int = 3, cpus: int = 64, duration: str = "2ms") -> Table:
    # test_vmalloc's store after each vmalloc goes through the dTLB model:
    # load its compiled kernels first, a start-up cost the quickstart
    # figure measures, not an event rate
    warm_up()
    t = Table(
        f"Event-heavy: vmalloc/vfree (1-4 pages) on {cpus} CPUs, {duration} "
        f"simulated, median of {repeat}",
        ["kernel", "events", "sim ev/s", "bare SimPy ev/s", "ratio", "sim wall s"],
        note="rates per CPU second; ratio = simulator rate / bare SimPy rate, "
        "both measured in the same child",
    )
    worst = None
    bare = []
    presets = ("6.1", "latest")
    done = interleaved(one, [(cpus, duration, p) for p in presets], repeat)
    for preset in presets:
        runs = [value for value, _ in done[cpus, duration, preset]]
        ratio = median(b / c for _, c, _, b in runs)
        t.add(
            preset,
            f"{runs[0][0]:,}",
            f"{median(e / c for e, c, _, _ in runs):,.0f}",
            f"{median(e / b for e, _, _, b in runs):,.0f}",
            f"{ratio:.2f}",
            f"{median(w for _, _, w, _ in runs):.2f}",
        )
        worst = ratio if worst is None else min(worst, ratio)
        bare += [e / b for e, _, _, b in runs]
        t.figures[f"event_ratio_{preset}"] = round(ratio, 3)
    t.figures["event_ratio_min"] = round(worst, 3)
    t.figures["event_bare_simpy_ev_per_s"] = round(median(bare))
    t.verdict(f">= {TARGET} of bare SimPy", worst >= TARGET, f"lowest {worst:.2f}")
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
