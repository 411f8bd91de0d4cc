"""Simulator event rate as a ratio of bare SimPy's, measured in one run.

The event-heavy path (vmalloc/vfree with lock churn on many CPUs) is
simulated, then bare SimPy processes doing nothing but timeouts run until
they have processed the same number of events. Both rates come from the
same process on the same machine a moment apart, so the ratio holds even
where absolute speed does not. Median of ``--repeat`` runs.

    python benchmarks/bench_engine.py [--cpus 64] [--duration 2ms] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import simpy

from simcore.config.load import load_workload
from simcore.engine import Simulation

WORKLOAD = """\
name: bench-engine
seed: 1
duration: {duration}
machine: {{profile: skylake-sp, cpus: {cpus}}}
kernel: {{preset: "{preset}"}}
workloads:
  - {{type: vmalloc_stress, nr_pages: 1, max_pages: 4}}
"""


def bare_simpy(events: int, procs: int) -> float:
    """Seconds for bare SimPy to process ``events`` timeouts in ``procs`` loops."""
    env = simpy.Environment()
    per = events // procs

    def loop(env, n):
        for _ in range(n):
            yield env.timeout(1)

    for _ in range(procs):
        env.process(loop(env, per))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def one(cpus: int, duration: str, preset: str) -> tuple[int, float, float]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.yaml"
        p.write_text(WORKLOAD.format(cpus=cpus, duration=duration, preset=preset))
        sim = Simulation(load_workload(p), "module_alloc")
    r = sim.run()
    bare = bare_simpy(r.events, cpus)
    return r.events, r.wall_s, bare


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--duration", default="2ms")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print(
        f"event-heavy: vmalloc/vfree loop on {args.cpus} CPUs, {args.duration} "
        f"simulated, median of {args.repeat}"
    )
    print(f"{'preset':<8}{'events':>10}{'sim ev/s':>12}{'bare ev/s':>12}{'ratio':>8}")
    for preset in ("6.1", "latest"):
        rows = [one(args.cpus, args.duration, preset) for _ in range(args.repeat)]
        events = rows[0][0]
        sim_rate = statistics.median(e / w for e, w, _ in rows)
        bare_rate = statistics.median(e / b for e, _, b in rows)
        print(
            f"{preset:<8}{events:>10}{sim_rate:>12,.0f}{bare_rate:>12,.0f}"
            f"{sim_rate / bare_rate:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
