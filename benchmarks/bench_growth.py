"""Growth: how cost and memory grow with simulated duration and CPUs.

One steady workload where every CPU does the same work: test_vmalloc's
random-size loop with a 200 us pause, and BPF programs (loaded at the start)
invoked at 1 M/s, at 1x, 2x and 4x its duration on 64 CPUs, and at 16, 64
and 256 CPUs for 1x, on a 2-socket Genoa (384 hardware threads, so 256 is a
real machine).

Each point runs in a fresh child. Its cost is the CPU seconds of the run
(on a shared machine wall time mostly measures the neighbours); ``per
unit`` divides the cost's growth over the group's first point by the
growth in work (duration, or CPUs), so 1.00 is exactly linear. Peak memory
is the child's peak resident size over what it started with: the
simulator's state, not the interpreter's. The loop pauses 200 us so that
even 256 CPUs stay short of saturating the vmap locks (the work per CPU
stays the same), and ``lazy_max_pages`` is 8192 (32 MiB; the kernel's
default multiplies it by fls(CPUs)) so lazily freed areas are purged every
few ms and memory is at its steady level within 1x.

Targets: ``per unit`` within 20% of 1.00 for every point; peak memory at
4x duration within 20% of 1x.

    python benchmarks/bench_growth.py [--repeat 3]
"""

from __future__ import annotations

import sys

from common import (
    Stopwatch,
    Table,
    interleaved,
    median,
    mib,
    simulation,
    standalone,
    warm_up,
)

WORKLOAD = """\
name: bench-growth
seed: 1
duration: {duration}
machine: {{profile: zen4-genoa, cpus: {cpus}}}
kernel: {{preset: latest, lazy_max_pages: 8192}}
strategy: bpf_prog_pack
sim: {{tlb_model: fast}}
workloads:
  - {{type: vmalloc_stress, nr_pages: 1, max_pages: 4, think: 200us}}
  - type: bpf_jit
    programs: 100
    load_cpus: 4
    exec: {{rate: 1000000/s, popularity: {{zipf: 1.1}}}}
"""

BASE_MS, BASE_CPUS = 20, 64
# (label, simulated ms, CPUs, work relative to the first point of its group)
GROUPS = (
    [(f"{k}x", BASE_MS * k, BASE_CPUS, k) for k in (1, 2, 4)],
    [(f"{c} CPUs", BASE_MS, c, c // 16) for c in (16, 64, 256)],
)
TOLERANCE = 0.2


def one(ms: int, cpus: int) -> tuple[float, float, int]:
    """(CPU s, wall s, events)."""
    sim = simulation(WORKLOAD.format(duration=f"{ms}ms", cpus=cpus))
    with Stopwatch() as sw:
        sim.env.run(until=sim.duration)
    return sw.cpu, sw.wall, next(sim.env._eid)


def measure(repeat: int = 3) -> Table:
    warm_up()
    t = Table(
        f"Growth: vmalloc/vfree loop and BPF execution on every CPU, 1x = "
        f"{BASE_MS} ms simulated on {BASE_CPUS} CPUs, median of {repeat}",
        [
            "point",
            "simulated",
            "CPUs",
            "events",
            "CPU s",
            "wall s",
            "per unit",
            "peak MiB",
        ],
        note="per unit = growth of CPU seconds over the group's first point / "
        "growth of work (1.00 = linear)",
    )
    worst = 0.0
    peaks: dict[str, float | None] = {}
    # 1x and 64 CPUs are one point, run once
    done = interleaved(one, [(ms, c) for g in GROUPS for _, ms, c, _ in g], repeat)
    for group in GROUPS:
        base = None
        for label, ms, cpus, work in group:
            runs = done[ms, cpus]
            cost = median(c for (c, _, _), _ in runs)
            peak = median(m for _, m in runs) if runs[0][1] is not None else None
            if base is None:
                base = cost
            unit = cost / base / work
            worst = max(worst, abs(unit - 1.0))
            peaks[label] = peak
            t.add(
                label,
                f"{ms} ms",
                cpus,
                f"{runs[0][0][2]:,}",
                f"{cost:.2f}",
                f"{median(w for (_, w, _), _ in runs):.2f}",
                f"{unit:.2f}",
                mib(peak),
            )
    t.figures["growth_per_unit_max_deviation"] = round(worst, 3)
    t.verdict(
        f"linear within {TOLERANCE:.0%}",
        worst <= TOLERANCE,
        f"largest deviation of per unit from 1.00: {worst:.2f}",
    )
    if peaks.get("1x") is not None:
        grew = peaks["4x"] / peaks["1x"] - 1.0
        t.figures["growth_memory_4x_over_1x"] = round(grew, 3)
        t.verdict(
            "memory flat with duration",
            grew <= TOLERANCE,
            f"4x peak {grew:+.0%} over 1x",
        )
    return t


def main() -> int:
    return standalone(__doc__, measure)


if __name__ == "__main__":
    sys.exit(main())
