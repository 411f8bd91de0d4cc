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


def sim_from_text(
    text: str,
    *,
    strategy: str = "module_alloc",
    where: Path | None = None,
    sets: tuple[str, ...] = (),
) -> Simulation:
    """A Simulation of the workload file ``text``. The file goes to
    ``where`` when given (so captures named relative to it stay readable),
    else to a directory removed at once."""
    if where is None:
        with tempfile.TemporaryDirectory() as d:
            return sim_from_text(text, strategy=strategy, where=Path(d), sets=sets)
    p = where / "w.yaml"
    p.write_text(text)
    return Simulation(load_workload(p, sets=sets), strategy)


def make_sim(
    *,
    machine: str = "{profile: small-test}",
    kernel: str = "{preset: latest}",
    seed: int = 1,
    where: Path | None = None,
    strategy: str = "module_alloc",
) -> Simulation:
    """A Simulation of a small machine serving executable memory with
    ``strategy``, its workload file placed as ``sim_from_text`` does."""
    text = WORKLOAD.format(machine=machine, kernel=kernel, seed=seed)
    sim = sim_from_text(text, strategy=strategy, where=where)
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


def spy_vmalloc(sim) -> list:
    """Log the simulation's vmalloc()/vfree() calls, in order: (call,
    caller, size, area)."""
    vm = sim.kernel.vmalloc
    log: list = []
    alloc, free = vm.vmalloc, vm.vfree

    def vmalloc(cpu, size, **kw):
        area = yield from alloc(cpu, size, **kw)
        log.append(("vmalloc", kw.get("caller"), size, area))
        return area

    def vfree(cpu, area):
        log.append(("vfree", area.caller, area.size, area))
        yield from free(cpu, area)

    vm.vmalloc, vm.vfree = vmalloc, vfree
    return log
