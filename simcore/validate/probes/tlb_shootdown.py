"""``tlb_shootdown``: time one TLB flush as its initiator sees it.

Models the measurement of Nadav Amit's shootdown series
(20190525082203.6531-1-namit@vmware.com): CPU 0 unmaps one page of a
user mapping that ``targets`` other CPUs have in their mm_cpumask, so
``flush_tlb_mm_range()`` flushes locally and sends IPIs to those CPUs;
with ``kind: kernel`` it is ``flush_tlb_kernel_range()`` instead, which
reaches every online CPU. The initiator's wait (latency until the slowest
target acknowledged) goes to ``alloc.tlb_flush.latency_ns``; flushes are
``interval`` apart so that they never overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from simcore.constants import PAGE
from simcore.errors import ConfigError
from simcore.strict import Strict
from simcore.units import Duration

if TYPE_CHECKING:
    from simcore.engine import Simulation

# a user address in the initiator's mm (any canonical user address will do:
# the flush model only needs the range)
USER_ADDR = 0x7F00_0000_0000
# a vmalloc address for kernel-range flushes (VMALLOC_START on x86-64)
KERNEL_ADDR = 0xFFFF_C900_0000_0000


class TlbShootdown(Strict):
    type: Literal["tlb_shootdown"]
    kind: Literal["user", "kernel"] = "user"
    targets: int = Field(default=1, ge=0, description="remote CPUs (user flushes)")
    pages: int = Field(default=1, ge=1, le=1 << 18)
    count: int = Field(default=1000, ge=1, le=10_000_000)
    interval: Duration = Field(default="20us", gt=0)

    def start(self, sim: Simulation) -> None:
        if self.kind == "user" and self.targets >= sim.nr_cpus:
            raise ConfigError(
                f"probe.targets = {self.targets} but the machine has only "
                f"{sim.nr_cpus} CPUs",
                file=sim.resolved.file,
                path="probe.targets",
                expected=f"at most {sim.nr_cpus - 1} (CPU 0 initiates)",
            )
        sim.env.process(self._run(sim))

    def _run(self, sim: Simulation):
        flush = sim.machine.flush
        cpus = list(range(self.targets + 1))
        for _ in range(self.count):
            if self.kind == "user":
                end = USER_ADDR + self.pages * PAGE
                ns = flush.user_range(0, USER_ADDR, end, cpus)
            else:
                ns = flush.kernel_range(0, KERNEL_ADDR, KERNEL_ADDR + self.pages * PAGE)
            yield sim.env.timeout(ns)
            sim.metrics.latency("tlb_flush", ns)
            yield sim.env.timeout(self.interval)
