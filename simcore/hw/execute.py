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

Attribution, as ``perf record -e iTLB-load-misses`` reads per symbol: every
touch belongs to an *owner* (``bpf``, ``modules``, ``kernel``, ``user``,
``arena``), and the misses, walks and walk cycles are also counted under
``<metric>.<owner>``; the owners of a metric sum to its total exactly. A
batch of one owner is counted from the batch's totals; a batch that mixes
owners (a CPU's background code and data interleaved) asks the TLB for each
touch's outcome and splits by it, so the TLBs see the same stream either way.
"""

from __future__ import annotations

import numpy as np

from simcore.hw.pagewalk import PageWalker
from simcore.hw.tlb import L1_HIT, WALK, TlbStats, prepare_batch
from simcore.metrics.registry import Metrics

_SHIFTS = (12, 21, 30)


class Executor:
    def __init__(self, machine, metrics: Metrics) -> None:
        self.machine = machine
        self.metrics = metrics
        prof = machine.profile
        self.ghz = prof.clock_ghz.value
        self.walker = PageWalker(prof)
        self.stlb_hit_cycles = prof.tlb.stlb_hit_cycles.value
        # footprint slots: 2M regions, pages per walk class, 1G/512G/256T
        # regions (simcore.hw.compiled.footprint)
        self._fp = np.zeros(7, dtype=np.int64)
        self._footprint = None  # simcore.hw.compiled.footprint, on first walk
        # attributed metric names by (side, owner) (_owner_names)
        self._names: dict[tuple[str, str], tuple[str, str, str]] = {}
        # the host's own code (simcore.workloads.host), caught up on a CPU
        # before each of its batches; None when a run has no host activity
        self.host = None

    def run(
        self,
        cpu: int,
        addrs: np.ndarray,
        shifts: np.ndarray,
        side: str,
        instructions: int,
        owner: str | tuple[np.ndarray, tuple[str, ...]] = "kernel",
        per_walk: tuple[float, float, float] | None = None,
    ) -> int:
        """Touch ``addrs`` (mapped at ``shifts``) on ``cpu``; return the ns lost.

        ``owner`` names whose touches they are, or, for a mixed batch, gives
        ``(codes, names)``: each touch's index into ``names``. ``per_walk``,
        the cycles of one 4K, 2M and 1G walk (:meth:`walk_costs`), skips
        costing walks from this batch's own page-table footprint: for a
        caller whose footprint does not change between batches."""
        if self.host is not None:
            self.host.catch_up(cpu)
        m = self.metrics
        m.inc("cpu.instructions", instructions)
        if len(addrs) == 0:
            return 0
        tlb = self.machine.tlb(cpu)
        if owner.__class__ is str:
            stats = tlb.lookup(addrs, shifts, side)
            if stats.stlb_misses and per_walk is None:
                per_walk = self._walk_cycles(addrs, shifts, stats)[1]
            return self.account(side, owner, stats, per_walk)
        # a mixed batch: each touch's outcome splits the counts by owner
        outcomes = np.empty(len(addrs), np.int8)
        stats = tlb.lookup(addrs, shifts, side, outcomes=outcomes)
        walk = 0.0
        if stats.stlb_misses:
            if per_walk is None:
                walk, per_walk = self._walk_cycles(addrs, shifts, stats)
            else:
                walk = self._walks(stats, per_walk)
        l1 = self._totals(side, stats, walk)
        pw = per_walk if per_walk is not None else (0.0, 0.0, 0.0)
        self._attribute_mixed(l1, owner, shifts, outcomes, pw, int(walk))
        return self._lost(side, stats, walk)

    def account(
        self,
        side: str,
        owner: str,
        stats: TlbStats,
        per_walk: tuple[float, float, float] | None,
    ) -> int:
        """Count touches of one ``owner`` already looked up (``stats``), their
        walks at ``per_walk`` cycles each by class; return the ns lost. The
        second half of :meth:`run`, for callers that did the lookup
        themselves (:meth:`simcore.hw.tlb.Tlb.lookup_zipf`)."""
        walk = self._walks(stats, per_walk) if stats.stlb_misses else 0.0
        self._totals(side, stats, walk)
        names = self._owner_names(side, owner)
        m = self.metrics
        m.inc(names[0], stats.l1_misses)
        m.inc(names[1], stats.stlb_misses)
        if stats.stlb_misses:
            m.inc(names[2], int(walk))
        return self._lost(side, stats, walk)

    def _totals(self, side: str, stats: TlbStats, walk: float) -> str:
        """The run-wide counts of a looked-up batch; its L1 metric's name."""
        m = self.metrics
        l1 = "itlb.misses" if side == "i" else "dtlb.misses"
        m.inc(l1, stats.l1_misses)
        m.inc("stlb.misses", stats.stlb_misses)
        if stats.stlb_misses:
            m.inc("pagewalk.cycles", int(walk))
            m.inc("pagewalk.walks", stats.stlb_misses)
        return l1

    def _owner_names(self, side: str, owner: str) -> tuple[str, str, str]:
        # built once per (side, owner): formatting three names per quantum
        # was a few per cent of an execution-heavy run
        names = self._names.get((side, owner))
        if names is None:
            l1 = "itlb.misses" if side == "i" else "dtlb.misses"
            names = self._names[side, owner] = (
                f"{l1}.{owner}",
                f"stlb.misses.{owner}",
                f"pagewalk.cycles.{owner}",
            )
        return names

    @staticmethod
    def _walks(stats: TlbStats, per_walk) -> float:
        return (
            stats.walks_4k * per_walk[0]
            + stats.walks_2m * per_walk[1]
            + stats.walks_1g * per_walk[2]
        )

    def _lost(self, side: str, stats: TlbStats, walk: float) -> int:
        # STLB hits cost their lookup; data-side walks overlap up to the
        # number of page walkers
        cycles = stats.stlb_hits * self.stlb_hit_cycles
        if side == "d":
            walk /= max(1, self.walker.walkers)
        self.metrics.cpu_time("pagewalk", int(walk / self.ghz))
        return int((cycles + walk) / self.ghz)

    def touch(
        self, cpu: int, addr: int, shift: int, side: str, owner: str = "kernel"
    ) -> int:
        """One page touch on ``cpu``: a kernel store or load right after an
        allocator returned the mapping (test_vmalloc's ``*ptr = 0``).

        The single-touch form of :meth:`run`, for the allocation loops that
        touch one page per call: one TLB lookup, no batch to build. A walk
        costs what a one-page working set's walk does (its PTE line was
        just written, so it is cache-hot). Returns the ns lost. The host's
        code is not caught up here: a store to a mapping made a moment ago
        misses whatever else the CPU ran, so it cannot change the outcome.
        """
        outcome = self.machine.tlb(cpu).lookup_one(addr, shift, side)
        if outcome == L1_HIT:
            return 0
        m = self.metrics
        names = self._owner_names(side, owner)
        m.inc("itlb.misses" if side == "i" else "dtlb.misses", 1)
        m.inc(names[0], 1)
        if outcome != WALK:
            return int(self.stlb_hit_cycles / self.ghz)
        # one dependent walk, nothing to overlap with: its whole latency,
        # after the STLB lookup that missed
        walk = self.walker.walk_cycles(shift, 1, 1)
        m.inc("stlb.misses", 1)
        m.inc(names[1], 1)
        m.inc("pagewalk.walks", 1)
        m.inc("pagewalk.cycles", int(walk))
        m.inc(names[2], int(walk))
        ns = int((self.stlb_hit_cycles + walk) / self.ghz)
        m.cpu_time("pagewalk", int(walk / self.ghz))
        return ns

    def walk_costs(
        self, addrs: np.ndarray, shifts: np.ndarray
    ) -> tuple[float, float, float]:
        """Cycles of one 4K, 2M and 1G walk over the page-table footprint of
        ``addrs``: what :meth:`run` charges per walk when given them."""
        one_each = TlbStats(walks_4k=1, walks_2m=1, walks_1g=1)
        return self._walk_cycles(addrs, shifts, one_each)[1]

    def _walk_cycles(
        self, addrs: np.ndarray, shifts: np.ndarray, stats
    ) -> tuple[float, tuple[float, float, float]]:
        """Cycles of the batch's walks, each class costed from the batch's
        page-table footprint; and the cycles of one walk of each class
        (4K, 2M, 1G), which attribution splits by."""
        if self._footprint is None:
            from simcore.hw.compiled import footprint

            self._footprint = footprint
        fp = self._fp
        # shifts were range-checked by the lookup; here they only classify
        self._footprint(*prepare_batch(addrs, shifts, check_uint8=False), fp)
        regions = int(fp[0])
        total = 0.0
        per_walk = [0.0, 0.0, 0.0]  # cycles of one walk, by page size
        for c, (shift, walks) in enumerate(
            ((12, stats.walks_4k), (21, stats.walks_2m), (30, stats.walks_1g))
        ):
            if walks:
                pages = int(fp[1 + c])
                per_walk[c] = self.walker.walk_cycles(
                    shift, pages, regions, int(fp[4]), int(fp[5]), int(fp[6])
                )
                total += walks * per_walk[c]
        return total, tuple(per_walk)

    def _attribute_mixed(self, l1, owner, shifts, outcomes, per_walk, walk_total):
        """Split one mixed batch's counts by owner, from each touch's outcome."""
        codes, names = owner
        m = self.metrics
        n = len(names)
        miss = outcomes != L1_HIT
        walked = outcomes == WALK
        l1_by = np.bincount(codes[miss], minlength=n)
        walk_by = np.bincount(codes[walked], minlength=n)
        cyc = np.zeros(n)
        if walk_total:
            sh = np.broadcast_to(np.asarray(shifts), outcomes.shape)
            for c, shift in enumerate(_SHIFTS):
                sel = walked & (sh == shift)
                if per_walk[c] and sel.any():
                    cyc += np.bincount(codes[sel], minlength=n) * per_walk[c]
        # whole cycles per owner that add up to the batch's total exactly:
        # floors, then the rounding left over to the owner with the most
        owned = np.floor(cyc).astype(np.int64)
        if walk_total:
            owned[int(np.argmax(cyc))] += walk_total - int(owned.sum())
        for i, name in enumerate(names):
            if l1_by[i]:
                m.inc(f"{l1}.{name}", int(l1_by[i]))
            if walk_by[i]:
                m.inc(f"stlb.misses.{name}", int(walk_by[i]))
                m.inc(f"pagewalk.cycles.{name}", int(owned[i]))
