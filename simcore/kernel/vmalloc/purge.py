"""mm/vmalloc.c: lazy freeing of KVA and its purge.

Kernel functions modelled: ``free_vmap_area_noflush()``,
``drain_vmap_area_work()`` (workqueue) or the caller's
``try_purge_vmap_area_lazy()`` by era, ``__purge_vmap_area_lazy()`` (per
node, with ``purge_vmap_node()`` on parallel helpers via
``schedule_work_on()``, or the v5.11-v6.8 purge tree),
``reclaim_and_purge_vmap_areas()``, ``reclaim_list_global()`` and
``flush_tlb_kernel_range()``; ``node_pool_add_va()`` when purged areas go
back to their node's pools.
"""

from __future__ import annotations

from simcore.constants import PAGE_SHIFT
from simcore.kernel.kva import KvaSpace
from simcore.kernel.vmalloc.area import VmArea
from simcore.kernel.vmalloc.vmap_area import (
    KVA_END,
    KVA_START,
    MAX_VA_SIZE_PAGES,
    _Node,
    rb_depth,
)


class PurgeMixin:
    """free_vmap_area_noflush() and __purge_vmap_area_lazy().

    Part of :class:`simcore.kernel.vmalloc.core.Vmalloc`, whose
    ``__init__`` sets the state these methods use.
    """

    def _flush(self, cpu: int, start: int, end: int) -> int:
        """flush_tlb_kernel_range(); returns the initiator's latency."""
        return self.kernel.machine.flush.kernel_range(cpu, start, end)

    def _free_vmap_area_noflush(self, cpu: int, area: VmArea, fast: bool = False):
        """free_vmap_area_noflush(): account the whole area, guard included.
        ``fast``: the fast lock model's section (simcore.hw.locks_fast)."""
        self.lazy_nr += area.size >> PAGE_SHIFT
        nr_lazy = self.lazy_nr
        if self.per_node:
            vn = self.nodes[area.node] if area.node >= 0 else self._addr_node(area.addr)
            lock = vn.lazy_lock
            extra = yield from (lock.take_lagged(cpu) if fast else lock.take(cpu))
            vn.lazy.append(area)
            ns = self._touch_ns(cpu, lock, rb_depth(len(vn.lazy)) - 1, 1)
            yield lock.section(cpu, int(ns + extra))
            lock.leave(cpu)
        elif self.per_area_purge:
            # v5.10 and earlier: llist_add(&va->purge_list, &vmap_purge_list),
            # one lockless cmpxchg; the tree below is bookkeeping only
            self.lazy_tree.free(area.addr, area.size)
            self.lazy_list.append((area.addr, area.size))
            yield self._spent(cpu, self.uncontended_ns, self.lag if fast else None)
        else:
            lock = self.purge_area_lock
            extra = yield from (lock.take_lagged(cpu) if fast else lock.take(cpu))
            visits = self.lazy_tree.free(area.addr, area.size)
            t = self.lazy_tree
            ns = self._touch_ns(cpu, lock, visits - t.written, t.written)
            yield lock.section(cpu, int(ns + extra))
            lock.leave(cpu)
        if nr_lazy > self.lazy_max_pages:
            if self.in_workqueue:
                if not self.drain_pending:
                    # schedule_work(&drain_vmap_work): a no-op while pending;
                    # queued while it runs, it runs again once it is done,
                    # never twice at once (workqueues are non-reentrant,
                    # 'workqueue: make all workqueues non-reentrant', v3.7)
                    self.drain_pending = True
                    if not self.drain_running:
                        self.drain_running = True
                        self.env.process(self._drain_work(cpu))
            elif self.purge_lock.owner is None:
                # try_purge_vmap_area_lazy(): mutex_trylock, skip if busy
                yield from self._pay_lag(cpu, self.lag if fast else None)
                self.purge_lock.acquire(cpu)
                yield from self._purge_lazy(cpu, KVA_END, 0, False)
                self.purge_lock.release(cpu)

    def _drain_work(self, cpu: int):
        """drain_vmap_area_work() on this CPU's kworker, woken once; run
        again by the same worker while it was queued meanwhile.

        schedule_work() queues it on system_wq, a per-CPU workqueue: the
        kworker runs on the freeing CPU and its CPU time is the task's
        there (Machine.kworker_start()), up to v7.0; 'mm/vmalloc: use
        dedicated unbound workqueue for vmap purge/drain' (in the mm tree
        from 31 March 2026, for v7.1, release inferred) moved it off the
        CPU, an era no preset models."""
        machine = self.kernel.machine
        yield self.env.timeout(self.wakeup_ns)
        while self.drain_pending:
            self.drain_pending = False  # cleared as the work starts to run
            while True:
                # mutex_lock() sleeps while another purge holds it; the
                # purge's own time, less its flush_work() waits for the
                # helpers, is the kworker's CPU time
                yield from self.purge_lock.take(cpu)
                t0, self.helper_wait_ns = machine.kworker_start(), 0
                yield from self._purge_lazy(cpu, KVA_END, 0, False)
                self.purge_lock.release(cpu)
                machine.kworker_done(cpu, t0, self.helper_wait_ns)
                # v5.18-v6.8 re-checked and drained again while over the
                # limit (20220119143540.601149-1-urezki@gmail.com); v6.9
                # drains once
                if self.per_node or self.lazy_nr <= self.lazy_max_pages:
                    break
        self.drain_running = False

    # -- purge -------------------------------------------------------------------
    def purge(self, cpu: int, *, full_decay: bool = False):
        """mutex_lock(vmap_purge_lock); __purge_vmap_area_lazy(); unlock."""
        yield from self.purge_lock.take(cpu)
        yield from self._purge_lazy(cpu, KVA_END, 0, full_decay)
        self.purge_lock.release(cpu)

    def reclaim_and_purge(self, cpu: int):
        """reclaim_and_purge_vmap_areas(): fragmented blocks, full decay, purge."""
        self.metrics.inc("vmap.reclaims")
        yield from self.purge_lock.take(cpu)
        yield from self._purge_fragmented_blocks_allcpus(cpu)
        yield from self._purge_lazy(cpu, KVA_END, 0, True)
        self.purge_lock.release(cpu)

    def _purge_lazy(self, cpu: int, start: int, end: int, full_decay: bool):
        """__purge_vmap_area_lazy() (caller holds vmap_purge_lock): bool purged."""
        t0 = self.env.now
        if not self.per_node:
            return (yield from self._purge_lazy_global(cpu, start, end, t0))
        work: list[_Node] = []
        scan = 0.0
        for vn in self.nodes:
            vn.purge_list = []
            vn.skip_populate = full_decay
            # decay_va_pool_node() tests list_empty() on every size class
            scan += self.pool_scan_ns
            if any(vn.pools.values()):
                yield self.env.timeout(int(scan))
                scan = 0.0
                yield from self._decay_va_pool_node(cpu, vn, full_decay)
            if not vn.lazy:
                continue
            if scan:
                yield self.env.timeout(int(scan))
                scan = 0.0
            extra = yield from vn.lazy_lock.take(cpu)
            vn.purge_list, vn.lazy = vn.lazy, []
            yield self.env.timeout(int(self.visit_ns + extra))
            vn.lazy_lock.release(cpu)
            start = min(start, min(a.addr for a in vn.purge_list))
            end = max(end, max(a.end for a in vn.purge_list))
            work.append(vn)
        if scan:
            yield self.env.timeout(int(scan))
        if not work:
            return False
        # one flush for the union of every node's lazy areas
        yield self.env.timeout(self._flush(cpu, start, end))
        helpers = min(max(self.lazy_nr // self.lazy_max_pages, 1), len(work)) - 1
        jobs = []
        for vn in work:
            if helpers > 0:
                # schedule_work_on(node id): that CPU's kworker purges it
                target = vn.id if vn.id < self.nr_cpus else cpu
                jobs.append(self.env.process(self._purge_helper(target, vn)))
                helpers -= 1
                self.metrics.inc("vmap.purge_helpers")
            else:
                yield from self._purge_vmap_node(cpu, vn)
        if jobs:  # flush_work() on each helper: the caller sleeps
            t_wait = self.env.now
            yield self.env.all_of(jobs)
            self.helper_wait_ns += self.env.now - t_wait
        self.metrics.inc("vmap.lazy_purges")
        self.metrics.latency("vmap_purge", self.env.now - t0)
        return True

    def _purge_lazy_global(self, cpu: int, start: int, end: int, t0: int):
        """v5.11-v6.8: detach the purge tree, flush once, merge under the lock."""
        if len(self.lazy_tree) == 0:
            return False
        if self.per_area_purge:
            return (yield from self._purge_lazy_list(cpu, start, end, t0))
        extra = yield from self.purge_area_lock.take(cpu)
        blocks = self.lazy_tree.blocks()
        self.lazy_tree = KvaSpace.empty(KVA_START, KVA_END)
        yield self.env.timeout(int(self.visit_ns + extra))
        self.purge_area_lock.release(cpu)
        start = min(start, blocks[0][0])
        end = max(end, blocks[-1][1])
        yield self.env.timeout(self._flush(cpu, start, end))
        # Held across the whole merge: cond_resched_lock() breaks it only
        # under CONFIG_PREEMPT contention (spin_needbreak()).
        ranges = [(s, e - s) for s, e in blocks]
        pages = sum(size >> PAGE_SHIFT for _, size in ranges)
        yield from self._reclaim_list_global(cpu, ranges, lazy_pages=pages)
        self.metrics.inc("vmap.lazy_purges")
        self.metrics.latency("vmap_purge", self.env.now - t0)
        return True

    def _purge_lazy_list(self, cpu: int, start: int, end: int, t0: int):
        """v5.10 and earlier: llist_del_all(&vmap_purge_list), one walk for
        the [start, end) the flush needs, the flush, then every area merged
        into the free tree on its own (merge_or_add_vmap_area() per area)
        under free_vmap_area_lock: O(n log n) with the lock held, the
        latency 96e2db456135 'mm/vmalloc: rework the drain logic' (v5.11)
        removed by merging at free time."""
        ranges, self.lazy_list = self.lazy_list, []
        self.lazy_tree = KvaSpace.empty(KVA_START, KVA_END)
        start = min(start, min(s for s, _ in ranges))
        end = max(end, max(s + size for s, size in ranges))
        yield self.env.timeout(int(len(ranges) * self.visit_ns))
        yield self.env.timeout(self._flush(cpu, start, end))
        pages = sum(size >> PAGE_SHIFT for _, size in ranges)
        yield from self._reclaim_list_global(cpu, ranges, lazy_pages=pages)
        self.metrics.inc("vmap.lazy_purges")
        self.metrics.latency("vmap_purge", self.env.now - t0)
        return True

    def _purge_helper(self, cpu: int, vn: _Node):
        """purge_vmap_node() as a work item on CPU ``cpu``'s kworker
        (schedule_work_on()): woken, then its CPU time is the time of the
        task it preempts there."""
        yield self.env.timeout(self.wakeup_ns)
        machine = self.kernel.machine
        t0 = machine.kworker_start()
        yield from self._purge_vmap_node(cpu, vn)
        machine.kworker_done(cpu, t0)

    def _purge_vmap_node(self, cpu: int, vn: _Node):
        """purge_vmap_node(): back to this node's pools, or to the free tree."""
        areas, vn.purge_list = vn.purge_list, []
        to_global: list[tuple[int, int]] = []
        pooled = 0
        pages = 0
        for a in areas:
            pages += a.size >> PAGE_SHIFT
            idx = (a.size - 1) >> PAGE_SHIFT
            if a.node >= 0 and not vn.skip_populate and idx < MAX_VA_SIZE_PAGES:
                # node_pool_add_va(): list_add() at the head
                vn.pools.setdefault(idx, []).append(a)
                pooled += 1
            else:
                to_global.append((a.addr, a.size))
        if pooled:
            # node_pool_add_va() takes pool_lock once per area
            yield from vn.pool_lock.hold(
                cpu,
                pooled * self.visit_ns + (pooled - 1) * self.uncontended_ns,
            )
        self.lazy_nr -= pages
        if to_global:
            yield from self._reclaim_list_global(cpu, to_global)

    def _reclaim_list_global(
        self, cpu: int, ranges: list[tuple[int, int]], *, lazy_pages: int = 0
    ):
        """reclaim_list_global(): merge into the free tree under its lock.

        ``lazy_pages``: taken off vmap_lazy_nr inside the section, as the
        global era's __purge_vmap_area_lazy() does while it merges.
        """
        extra = yield from self.free_lock.take(cpu)
        released = self.kva.released
        visits = written = 0
        for s, size in ranges:
            visits += self.kva.free(s, size)
            written += self.kva.written
        self.lazy_nr -= lazy_pages
        work = self._touch_ns(cpu, self.free_lock, visits - written, written)
        work += (self.kva.released - released) * self.slab_ns
        yield self.env.timeout(int(work + extra))
        self.free_lock.release(cpu)
