"""Tests of the modelled kernel: buddy allocator, page tables, CPA.

``make_sim`` builds a Simulation the normal way, from a small workload file
whose only workload does one vmalloc/vfree, and lets that finish, so the
kernel objects under test run on a quiet machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from simcore.config.load import load_workload
from simcore.engine import Simulation

WORKLOAD = """\
name: kerneltest
seed: {seed}
duration: 1ms
machine: {machine}
kernel: {kernel}
workloads:
  - {{type: vmalloc_stress, cpus: 1, loops: 1}}
"""


# The workload's one vmalloc/vfree takes a few microseconds.
SETTLE_NS = 50_000


def make_sim(
    *,
    machine: str = "{profile: small-test}",
    kernel: str = "{preset: latest}",
    seed: int = 1,
    where: Path | None = None,
    strategy: str = "module_alloc",
) -> Simulation:
    """A Simulation of a small machine serving executable memory with
    ``strategy``. The workload file goes to ``where`` when given (so
    captures named relative to it stay readable), else to a directory
    removed at once."""
    text = WORKLOAD.format(machine=machine, kernel=kernel, seed=seed)
    if where is not None:
        p = where / "w.yaml"
        p.write_text(text)
        sim = Simulation(load_workload(p), strategy)
    else:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "w.yaml"
            p.write_text(text)
            sim = Simulation(load_workload(p), strategy)
    sim.env.run(until=SETTLE_NS)
    return sim


def run(sim: Simulation, gen):
    """Run one generator as a process to its end; return its value."""
    proc = sim.env.process(gen)
    sim.env.run(until=proc)
    return proc.value


_next_pfn = [1 << 20]


def pfns(n: int) -> list[int]:
    """``n`` distinct page frame numbers for vm_map_ram(), which maps the
    caller's pages and never owns them (so they need not come from the
    buddy allocator for tests of the vmap side)."""
    start = _next_pfn[0]
    _next_pfn[0] += n
    return list(range(start, start + n))
