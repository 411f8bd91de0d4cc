"""The modelled machine: CPUs, their TLBs, locks and the flush model."""

from __future__ import annotations

import numpy as np

from simcore.context import SimContext
from simcore.hw.flush import FlushModel
from simcore.hw.locks import LockStats, Mutex, SpinLock
from simcore.hw.topology import Topology

_SHIFT = {"4K": 12, "2M": 21, "1G": 30}


class Machine:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.env = ctx.env
        self.profile = profile = ctx.profile
        self.nr_cpus = ctx.nr_cpus
        self.metrics = metrics = ctx.metrics
        self.topo = Topology(profile, ctx.nr_cpus)
        self.tlb_model = ctx.tlb_model
        self._tlbs: list | None = None
        self.lock_stats: dict[str, LockStats] = {}
        self.flush = FlushModel(
            profile, self.topo, metrics, self.rng("hw.flush"), self.tlbs_in_use
        )
        self.uncontended_ns = int(round(profile.locks.atomic_uncontended_ns.value))
        # fast lock model: each CPU's time spent ahead of SimPy's clock, paid
        # in one timeout per operation (simcore.hw.locks_fast)
        self.lag: list[int] | None = (
            [0] * ctx.nr_cpus if ctx.lock_model == "fast" else None
        )
        # CPU time that work items of per-CPU (bound) workqueues took on
        # each CPU. The woken kworker preempts the task running there and
        # runs its item to the end (a purge is shorter than a scheduler
        # slice); the task owes that time and pays it at its next
        # vmalloc()/vfree() end (owed_ns()). Migration of the preempted
        # task by idle balancing is not modelled (an estimate: a task that
        # just ran is cache-hot, and the nohz balance kick waits for a tick).
        self.owed = [0] * ctx.nr_cpus
        # the SimPy processes of the work items running now: a kworker's
        # own vmalloc() or vfree() does not pay the task's debt
        self._kworkers: set = set()

    def kworker_start(self) -> int:
        """The active process, a bound work item, starts its CPU work; the
        time (``kworker_done()`` names the CPU)."""
        self._kworkers.add(self.env.active_process)
        return self.env.now

    def kworker_done(self, cpu: int, t0: int, slept: int = 0) -> None:
        """The work item that started at ``t0`` ends; its time on the CPU,
        less ``slept``, is owed by the task there (``cpu.kworker_ns``)."""
        self._kworkers.discard(self.env.active_process)
        ns = self.env.now - t0 - slept
        if ns > 0:
            self.owed[cpu] += ns
            self.metrics.cpu_time("kworker", ns)

    def owed_ns(self, cpu: int) -> int:
        """What the task on ``cpu`` owes the kworkers that preempted it,
        cleared for the caller to spend; 0 when the caller is a work item."""
        ns = self.owed[cpu]
        if not ns or self.env.active_process in self._kworkers:
            return 0
        self.owed[cpu] = 0
        return ns

    def rng(self, name: str) -> np.random.Generator:
        return self.ctx.rng(name)

    def ns(self, cycles: float) -> float:
        return cycles / self.profile.clock_ghz.value

    # -- locks ---------------------------------------------------------------
    def _stats(self, name: str) -> LockStats:
        st = self.lock_stats.get(name)
        if st is None:
            st = self.lock_stats[name] = LockStats()
        return st

    def _lock_args(self, name: str) -> tuple:
        return (
            self.env,
            self.topo,
            self.metrics,
            self._stats(name),
            self.uncontended_ns,
            self.lag,
        )

    def spinlock(self, name: str) -> SpinLock:
        """A spinlock; instances sharing a name report as one lock class."""
        return SpinLock(*self._lock_args(name))

    def mutex(self, name: str) -> Mutex:
        wake = int(round(self.profile.locks.mutex_wakeup_ns.value))
        return Mutex(*self._lock_args(name), wakeup_ns=wake)

    # -- TLBs ----------------------------------------------------------------
    def tlb_geometry(self):
        from simcore.hw.tlb import TlbArray, TlbGeometry

        t = self.profile.tlb

        def arrays(specs):
            return tuple(
                TlbArray(
                    tuple(_SHIFT[s] for s in a.sizes),
                    a.entries,
                    a.ways,
                    a.sharing.value,
                )
                for a in specs
            )

        return TlbGeometry(
            itlb=arrays(t.itlb),
            dtlb=arrays(t.dtlb),
            stlb=arrays(t.stlb),
            itlb2=arrays(t.itlb2),
        )

    def tlb(self, cpu: int):
        """CPU ``cpu``'s TLBs, created on first use (memory follows use)."""
        tlbs = self._tlb_list()
        return tlbs[cpu]

    def _tlb_list(self) -> list:
        if self._tlbs is None:
            from simcore.hw.tlbs import make_core_tlbs

            geo = self.tlb_geometry()
            # The online SMT siblings of a core share its TLB structures;
            # an offline sibling's partitions go to the online one.
            cores: dict[int, list] = {}
            for p in self.topo.places:
                cores.setdefault(p.core, []).append(p)
            tlbs: list = [None] * self.nr_cpus
            for places in cores.values():
                places.sort(key=lambda p: p.thread)
                made = make_core_tlbs(geo, self.tlb_model, len(places))
                for p, tlb in zip(places, made, strict=True):
                    tlbs[p.cpu] = tlb
            self._tlbs = tlbs
        return self._tlbs

    def tlbs_in_use(self) -> list:
        return self._tlbs or []

    def export_locks(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in sorted(self.lock_stats):
            out.update(self.lock_stats[name].export(name))
        return out
