"""Kernel TLB flushes: local INVLPG or global flush, IPI shootdowns, broadcast.

Models ``flush_tlb_kernel_range()`` of arch/x86/mm/tlb.c (and its arm64 /
INVLPGB counterparts, chosen by the profile's ``flush.broadcast``):

- more than ``single_page_flush_ceiling`` pages (x86: 33, commit
  a5102476a24b; arm64: MAX_DVM_OPS = 512) becomes a full flush, which for
  kernel mappings is a *global* flush (they carry _PAGE_GLOBAL);
- x86 without broadcast sends an IPI to every other online CPU and spins
  until the slowest has invalidated and acknowledged (hardware.md section 4);
  the local flush overlaps the remote ones (commit 4ce94eabac16, ~v5.13);
- INVLPGB / TLBI ...IS broadcast invalidations need no IPI: the cost grows
  with pages, not with CPUs, and victims only pay the refill.

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
        self.ipi_send_ns = f.ipi_send_ns.value
        self.mu = math.log(f.ipi_deliver_median_ns.value)
        self.sigma = f.ipi_deliver_sigma.value
        self.irq_ns = f.irq_entry_exit_ns.value
        self.stolen_ns = f.remote_stolen_ns.value
        self.bcast_page_ns = f.broadcast_per_page_ns.value
        self.bcast_sync_ns = f.broadcast_sync_ns.value
        self._xfer: dict[int, np.ndarray] = {}

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
        full = npages > self.ceiling
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
            pages = 1 if full else npages
            latency = (
                pages * self.bcast_page_ns
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
        return self._ipi_wait(self._transfer_ns(cpu), inv_ns, counter)

    def _ipi_wait(self, xfer: np.ndarray, inv_ns: float, counter: str) -> float:
        """IPIs to the CPUs ``xfer`` holds the extra transfer ns of; the
        sender's wait for the slowest acknowledgement."""
        targets = len(xfer)
        self.metrics.inc(counter, targets)
        deliver = self.rng.lognormal(self.mu, self.sigma, size=targets)
        deliver += xfer
        slowest = float(deliver.max()) + self.irq_ns + inv_ns
        # Each responder loses its interrupt handling and invalidation.
        self.metrics.cpu_time("shootdown", int(targets * (self.stolen_ns + inv_ns)))
        return self.ipi_send_ns + slowest

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
            xfer = np.array([self.topo.c2c_ns(cpu, c) for c in remote])
            latency = max(local, self._ipi_wait(xfer, inv, "tlb.user_ipis"))
        ns = int(round(latency))
        m.cpu_time("shootdown", ns)
        return ns

    def _transfer_ns(self, cpu: int) -> np.ndarray:
        # Targets on another socket see the IPI and the csd line one
        # cross-socket transfer later: the step between 1 and 2 sockets.
        # Cached per initiator: it is the same vector for every shootdown.
        vec = self._xfer.get(cpu)
        if vec is None:
            t = self.topo
            vec = np.array([t.c2c_ns(cpu, x) for x in range(t.nr_cpus) if x != cpu])
            self._xfer[cpu] = vec
        return vec

    def _apply(self, start: int, end: int, full: bool) -> None:
        if self.tlbs is None:
            return
        for tlb in self.tlbs():  # only CPUs whose TLBs are modelled
            if full:
                tlb.flush_all(include_global=True)
            else:
                tlb.invalidate_range(start, end)
