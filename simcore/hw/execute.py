"""Running code: a quantum's page touches through one CPU's TLBs.

Execution is batched (DESIGN section 6): a workload hands over all the page
touches of one quantum of a CPU's work at once; they go through the CPU's
TLB model in one call, and the time the misses add (STLB hits, page walks)
comes back as nanoseconds for the caller to spend in a single timeout.
Flushes change TLB state between quanta, which is when they take effect on
a real CPU too, at instruction granularity that is invisible at this scale.

Instruction-side walks stall the front end, so their full latency is paid;
data-side walks overlap with other work up to the number of page walkers
(``walk.walkers``): an estimate of memory-level parallelism, see hardware.md
section 2.
"""

from __future__ import annotations

import numpy as np

from simcore.hw.pagewalk import PageWalker
from simcore.hw.tlb import prepare_batch
from simcore.metrics.registry import Metrics


class Executor:
    def __init__(self, machine, metrics: Metrics) -> None:
        self.machine = machine
        self.metrics = metrics
        prof = machine.profile
        self.ghz = prof.clock_ghz.value
        self.walker = PageWalker(prof)
        self.stlb_hit_cycles = prof.tlb.stlb_hit_cycles.value
        self._fp = np.zeros(4, dtype=np.int64)
        self._footprint = None  # simcore.hw.compiled.footprint, on first walk

    def run(
        self,
        cpu: int,
        addrs: np.ndarray,
        shifts: np.ndarray,
        side: str,
        instructions: int,
    ) -> int:
        """Touch ``addrs`` (mapped at ``shifts``) on ``cpu``; return the ns lost."""
        m = self.metrics
        m.inc("cpu.instructions", instructions)
        if len(addrs) == 0:
            return 0
        stats = self.machine.tlb(cpu).lookup(addrs, shifts, side)
        m.inc("itlb.misses" if side == "i" else "dtlb.misses", stats.l1_misses)
        m.inc("stlb.misses", stats.stlb_misses)
        cycles = stats.stlb_hits * self.stlb_hit_cycles
        walk = 0.0
        if stats.stlb_misses:
            walk = self._walk_cycles(addrs, shifts, stats)
            m.inc("pagewalk.cycles", int(walk))
            m.inc("pagewalk.walks", stats.stlb_misses)
        if side == "d":
            walk /= max(1, self.walker.walkers)
        ns = int((cycles + walk) / self.ghz)
        m.cpu_time("pagewalk", int(walk / self.ghz))
        return ns

    def _walk_cycles(self, addrs: np.ndarray, shifts: np.ndarray, stats) -> float:
        """Cycles of the batch's walks, each class costed from the batch's
        page-table footprint."""
        if self._footprint is None:
            from simcore.hw.compiled import footprint

            self._footprint = footprint
        fp = self._fp
        # shifts were range-checked by the lookup; here they only classify
        self._footprint(*prepare_batch(addrs, shifts, check_uint8=False), fp)
        regions = int(fp[0])
        total = 0.0
        for c, (shift, walks) in enumerate(
            ((12, stats.walks_4k), (21, stats.walks_2m), (30, stats.walks_1g))
        ):
            if walks:
                pages = int(fp[1 + c])
                total += walks * self.walker.walk_cycles(shift, pages, regions)
        return total
