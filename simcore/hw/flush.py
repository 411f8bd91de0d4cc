"""Kernel TLB flushes: local INVLPG or global flush, IPI shootdowns, broadcast.

Models ``flush_tlb_kernel_range()`` of arch/x86/mm/tlb.c (and its arm64 /
INVLPGB counterparts, chosen by the profile's ``flush.broadcast``):

- more than ``single_page_flush_ceiling`` pages (x86: 33, commit
  a5102476a24b; arm64: MAX_DVM_OPS = 512) becomes a full flush, which for
  kernel mappings is a *global* flush (they carry _PAGE_GLOBAL);
- x86 without broadcast sends an IPI to every other online CPU and spins
  until the slowest has invalidated and acknowledged (hardware.md section 4);
  the local flush overlaps the remote ones (commit 4ce94eabac16, ~v5.13).
  One target's round (send, delivery, entry, handler dispatch, the csd
  ack) is a lognormal draw for a busy target sharing the initiator's LLC;
  a farther target adds the extra cache-line transfer, and what the
  target is doing adds its own delay (``target_delay``, supplied by the
  host model: an idle CPU's C-state exit, the rest of an IRQs-off
  section). The interrupt's exit is the responder's time only:
  csd_unlock() runs before it returns (kernel/smp.c);
- INVLPGB / TLBI ...IS broadcast invalidations need no IPI: the cost grows
  with the TLBI operations, not with CPUs, and victims only pay the refill.
  On arm64 a kernel range is one TLBI VAALE1IS per page, and past
  MAX_DVM_OPS pages flush_tlb_all(); from v6.13 (a923705c69f7) it goes
  through __flush_tlb_range_op(): on a CPU with FEAT_TLBIRANGE a few range
  TLBIs (:func:`tlbi_range_ops`), and without it flush_tlb_all() already
  at MAX_DVM_OPS pages (``>=``). The kernel says which
  (:meth:`FlushModel.use_range_ops`).

Each responder loses ``remote_stolen_ns`` plus its own invalidation to the
interrupt; that time is charged to CPU overhead (``shootdown``).
"""

from __future__ import annotations

import math

import numpy as np

from simcore.constants import PAGE
from simcore.hw.topology import Topology
from simcore.metrics.registry import Metrics
from simcore.profile import HwProfile

# MAX_TLBI_RANGE_PAGES: __TLBI_RANGE_PAGES(31, 3), the most one range
# operation covers (arch/arm64/include/asm/tlbflush.h)
MAX_TLBI_RANGE_PAGES = 32 << 16


def tlbi_range_ops(pages: int) -> int:
    """TLBIs __flush_tlb_range_op() issues for ``pages`` 4K pages with
    FEAT_TLBIRANGE: an odd page alone, then one range operation per
    non-zero 5-bit digit of the rest at scales 3 down to 0, each covering
    (num + 1) << (5 * scale + 1) pages."""
    ops = 0
    if pages % 2:
        ops, pages = 1, pages - 1
    for scale in (3, 2, 1, 0):
        unit = 1 << (5 * scale + 1)
        num = (pages // unit) & 0x1F
        if num:
            ops += 1
            pages -= num * unit
    return ops + pages  # single TLBIs for what no range covered (none)


class FlushModel:
    def __init__(
        self,
        profile: HwProfile,
        topo: Topology,
        metrics: Metrics,
        rng: np.random.Generator,
        tlbs,
    ) -> None:
        f = profile.flush
        self.topo = topo
        self.metrics = metrics
        self.rng = rng
        self.tlbs = tlbs  # callable cpu -> Tlb, or None when TLBs are not modelled
        ghz = profile.clock_ghz.value
        self.invlpg_ns = f.invlpg_cycles.value / ghz
        self.global_ns = f.global_flush_cycles.value / ghz
        self.cr3_ns = f.cr3_flush_cycles.value / ghz
        self.ceiling = f.single_page_flush_ceiling.value
        self.broadcast = f.broadcast.value
        self.mu = math.log(f.ipi_round_median_ns.value)
        self.sigma = f.ipi_round_sigma.value
        self.stolen_ns = f.remote_stolen_ns.value
        self.bcast_page_ns = f.broadcast_per_page_ns.value
        self.bcast_sync_ns = f.broadcast_sync_ns.value
        self._xfer: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # callable(initiator, target ids) -> extra ns per target, from what
        # each target is doing; None: every target busy, IRQs on
        self.target_delay = None
        # arm64 kernel ranges through __flush_tlb_range_op() (v6.13+), and
        # whether the CPU has range TLBIs; set by the kernel at boot
        self.range_op = False
        self.tlbi_range = False

    def use_range_ops(self, on: bool, cpu_has_range: bool) -> None:
        """flush_tlb_kernel_range() of a kernel from v6.13 on (arm64)."""
        self.range_op = on
        self.tlbi_range = on and cpu_has_range

    def _kernel_ops(self, npages: int) -> tuple[bool, int]:
        """(a full flush, TLBI operations) for a kernel range of npages."""
        if not self.range_op:
            full = npages > self.ceiling
            return full, 1 if full else npages
        if self.tlbi_range:
            full = npages > MAX_TLBI_RANGE_PAGES
            return full, 1 if full else tlbi_range_ops(npages)
        full = npages >= self.ceiling
        return full, 1 if full else npages

    def local_cost_ns(self, npages: int) -> float:
        """One CPU invalidating ``npages`` kernel pages (or flushing all)."""
        if npages > self.ceiling:
            return self.global_ns
        return npages * self.invlpg_ns

    def kernel_range(self, cpu: int, start: int, end: int) -> int:
        """flush_tlb_kernel_range(start, end) issued by ``cpu``.

        Applies the invalidation to every online CPU's TLB and returns the
        initiator's latency in ns (the caller spends it in a timeout).
        """
        npages = max(1, -(-(end - start) // PAGE))
        full, ops = self._kernel_ops(npages)
        m = self.metrics
        n = self.topo.nr_cpus
        self._apply(start, end, full)
        local = self.local_cost_ns(npages)
        if full:
            m.inc("tlb.full_flushes")
        if n == 1:
            m.inc("tlb.local_flushes")
            latency = local
        elif self.broadcast != "none":
            m.inc("tlb.broadcast_flushes")
            latency = (
                ops * self.bcast_page_ns
                + self.bcast_sync_ns
                + (self.global_ns if full else 0.0)
            )
        else:
            m.inc("tlb.shootdowns")
            latency = max(local, self.ipi_round(cpu, local))
        ns = int(round(latency))
        m.cpu_time("shootdown", ns)
        return ns

    def ipi_round(self, cpu: int, inv_ns: float, counter: str = "tlb.ipis") -> float:
        """on_each_cpu(): IPI every other online CPU, each runs ``inv_ns`` of
        work; the sender waits for the slowest acknowledgement (csd lock)."""
        if self.topo.nr_cpus == 1:
            return 0.0
        ids, xfer = self._targets(cpu)
        return self._ipi_wait(cpu, ids, xfer, inv_ns, counter)

    def _ipi_wait(
        self, cpu: int, ids: np.ndarray, xfer: np.ndarray, inv_ns: float, counter: str
    ) -> float:
        """IPIs from ``cpu`` to the CPUs ``ids`` (``xfer``: their extra
        transfer ns); the sender's wait for the slowest acknowledgement."""
        targets = len(ids)
        self.metrics.inc(counter, targets)
        rounds = self.rng.lognormal(self.mu, self.sigma, size=targets)
        rounds += xfer
        if self.target_delay is not None:
            rounds += self.target_delay(cpu, ids)
        # Each responder loses its interrupt handling and invalidation.
        self.metrics.cpu_time("shootdown", int(targets * (self.stolen_ns + inv_ns)))
        return float(rounds.max()) + inv_ns

    def user_range(self, cpu: int, start: int, end: int, cpus) -> int:
        """flush_tlb_mm_range() of a user mapping, issued by ``cpu`` after
        a zap (tlb_finish_mmu()).

        Only the CPUs in the mm's cpumask (``cpus``) can cache the mm's
        entries, so only they are flushed: locally if ``cpu`` is one of
        them, by IPI (or broadcast) for the others. Past the single-page
        ceiling the whole mm is flushed, a CR3 reload that keeps the global
        kernel entries. Counted as ``tlb.user_*``, apart from the all-CPU
        kernel-range flushes. Returns the initiator's latency in ns.
        """
        npages = max(1, -(-(end - start) // PAGE))
        full = npages > self.ceiling
        targets = sorted(set(cpus))
        tlbs = self.tlbs() if self.tlbs is not None else []
        for c in targets:
            if c < len(tlbs):
                if full:
                    tlbs[c].flush_all(include_global=False)
                else:
                    tlbs[c].invalidate_range(start, end)
        inv = self.cr3_ns if full else npages * self.invlpg_ns
        local = inv if cpu in targets else 0.0
        remote = [c for c in targets if c != cpu]
        m = self.metrics
        if full:
            m.inc("tlb.user_full_flushes")
        if not remote:
            m.inc("tlb.user_local_flushes")
            latency = local
        elif self.broadcast != "none":
            m.inc("tlb.user_broadcast_flushes")
            latency = (1 if full else npages) * self.bcast_page_ns + self.bcast_sync_ns
        else:
            m.inc("tlb.user_shootdowns")
            ids = np.array(remote, dtype=np.int64)
            xfer = np.array([self._extra_ns(cpu, c) for c in remote])
            latency = max(local, self._ipi_wait(cpu, ids, xfer, inv, "tlb.user_ipis"))
        ns = int(round(latency))
        m.cpu_time("shootdown", ns)
        return ns

    def _extra_ns(self, cpu: int, target: int) -> float:
        # The round was measured to a target in the initiator's LLC; a
        # farther one sees the IPI and the csd line one longer transfer
        # later: the step between 1 and 2 sockets.
        t = self.topo
        return max(0.0, t.c2c_ns(cpu, target) - t.c2c_same_llc_ns)

    def _targets(self, cpu: int) -> tuple[np.ndarray, np.ndarray]:
        # every other online CPU and its extra transfer ns; cached per
        # initiator: the same vectors for every shootdown
        got = self._xfer.get(cpu)
        if got is None:
            n = self.topo.nr_cpus
            ids = np.array([x for x in range(n) if x != cpu], dtype=np.int64)
            got = ids, np.array([self._extra_ns(cpu, int(x)) for x in ids])
            self._xfer[cpu] = got
        return got

    def _apply(self, start: int, end: int, full: bool) -> None:
        if self.tlbs is None:
            return
        for tlb in self.tlbs():  # only CPUs whose TLBs are modelled
            if full:
                tlb.flush_all(include_global=True)
            else:
                tlb.invalidate_range(start, end)
