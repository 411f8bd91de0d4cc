"""mm/vmalloc.c: KVA allocation, the busy trees and the per-node pools.

Kernel functions modelled: ``alloc_vmap_area()`` (``node_alloc()`` /
``node_pool_del_va()``, then ``preload_this_cpu_lock()`` +
``__alloc_vmap_area()`` under ``free_vmap_area_lock``, then
``insert_vmap_area()`` into the busy tree of the node owning the address),
``find_vmap_area()``, ``find_unlink_vmap_area()``, ``addr_to_node()`` and
``decay_va_pool_node()``; ``struct vmap_node`` is :class:`_Node`.

The free tree itself is :class:`simcore.kernel.kva.KvaSpace`, the
augmented rb-tree of ``__alloc_vmap_area()`` / ``merge_or_add_vmap_area()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE_SHIFT
from simcore.kernel.kva import KvaSpace
from simcore.kernel.vmalloc.area import VmArea

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


# vmap_init_free_space(): the free tree starts as [1, ULONG_MAX) minus the
# early vmlist areas.
KVA_START = 1
KVA_END = (1 << 64) - 1

# mm/vmalloc.c: pools hold areas of at most MAX_VA_SIZE_PAGES (256) pages,
# guard page included; pool index = (size - 1) / PAGE_SIZE.
MAX_VA_SIZE_PAGES = 256
# decay_va_pool_node(): n_decay >>= 2 (~25 %) unless full_decay.
POOL_DECAY_SHIFT = 2
# vmap_init_nodes(): a vmap_node owns 16-page zones (vmap_zone_size).
VMAP_ZONE_SHIFT = 4 + PAGE_SHIFT


class _Node:
    """struct vmap_node: busy/lazy trees and size pools of one partition.

    In the global era there is a single node whose busy lock is
    ``vmap_area_lock``.
    """

    __slots__ = (
        "id",
        "busy_lock",
        "lazy_lock",
        "pool_lock",
        "busy",
        "lazy",
        "pools",
        "purge_list",
        "skip_populate",
    )

    def __init__(self, kernel: Kernel, idx: int, per_node: bool) -> None:
        m = kernel.machine
        self.id = idx
        self.busy_lock = m.spinlock("vn_busy_lock" if per_node else "vmap_area_lock")
        self.lazy_lock = m.spinlock("vn_lazy_lock")
        self.pool_lock = m.spinlock("vn_pool_lock")
        self.busy: dict[int, VmArea] = {}
        self.lazy: list[VmArea] = []
        self.pools: dict[int, list[VmArea]] = {}  # pool index -> LIFO stack
        self.purge_list: list[VmArea] = []
        self.skip_populate = False


def rb_depth(n: int) -> int:
    """Nodes a descent of a balanced rb-tree of ``n`` entries touches: about
    log2(n), as every tree walk of the model charges it."""
    return n.bit_length() if n > 1 else 1


class VmapAreaMixin:
    """alloc_vmap_area() and the vmap_node busy trees and pools.

    Part of :class:`simcore.kernel.vmalloc.core.Vmalloc`, whose
    ``__init__`` sets the state these methods use.
    """

    # -- helpers ---------------------------------------------------------------
    def _spent(self, cpu: int, ns: float, lag: list[int] | None):
        """The event lock-free work ends with: its timeout, or (fast lock
        model, simcore.hw.locks_fast) the work goes into the CPU's lag and
        the event is one already processed."""
        if lag is None:
            return self.env.timeout(int(ns))
        lag[cpu] += int(ns)
        return self.done

    def _pay_lag(self, cpu: int, lag: list[int] | None):
        """The fast lock model's time ahead, paid before an exact step."""
        if lag is not None and lag[cpu]:
            ahead, lag[cpu] = lag[cpu], 0
            yield self.env.timeout(ahead)

    def _touch_ns(self, cpu: int, lock, reads: float, writes: float) -> float:
        """A critical section's data cost: ``reads`` tree nodes examined
        (shared lines, cached: ``rb_node_visit_ns`` each) and ``writes``
        lines dirtied, which the previous holder of ``lock`` most likely
        dirtied too and so come from its cache (estimate: the lines an
        operation writes are the ones the last one wrote, as in a loop of
        same-size allocations on the lowest-address path)."""
        reads = max(0.0, reads)
        return reads * self.visit_ns + writes * lock.line_ns(cpu, self.visit_ns)

    def _addr_node(self, addr: int) -> _Node:
        # addr_to_node(): 16-page zones interleaved over the nodes
        return self.nodes[(addr >> VMAP_ZONE_SHIFT) % self.nr_nodes]

    def find_vmap_area(self, addr: int) -> VmArea | None:
        """The busy area starting at ``addr`` (no time charged)."""
        return self._addr_node(addr).busy.get(addr)

    def find_vm_area(self, addr: int) -> VmArea | None:
        """find_vm_area(): the busy area *containing* ``addr`` (no time
        charged). Most callers pass an area's start, found in one lookup;
        an address inside an area is looked for over every node's busy
        areas, as __find_vmap_area() walks the tree."""
        va = self.find_vmap_area(addr)
        if va is not None:
            return va
        for vn in self.nodes:
            for va in vn.busy.values():
                if va.addr <= addr < va.end:
                    return va
        return None

    def find_vm_area_locked(self, cpu: int, addr: int):
        """find_vm_area() -> find_vmap_area() as the kernel times it: the
        busy tree of the address's vmap node (addr_to_node()), searched
        under its lock (vmap_area_lock in the global era). Returns the area
        starting at ``addr``, or None."""
        node = self._addr_node(addr)
        yield from node.busy_lock.hold(cpu, self.visit_ns * rb_depth(len(node.busy)))
        return node.busy.get(addr)

    # -- alloc_vmap_area -----------------------------------------------------------
    def _alloc_vmap_area(
        self,
        cpu: int,
        size: int,
        align: int,
        range_: str,
        *,
        pre_ns: float,
        va_flags: int = 0,
        has_vm: bool = True,
        fast: bool = False,
    ):
        """alloc_vmap_area(); ``pre_ns`` is lock-free work done before it.
        ``fast``: the fast lock model's sections, the time left in the
        CPU's lag for the caller to pay (simcore.hw.locks_fast)."""
        vstart, vend = self.ranges[range_]
        lag = self.lag if fast else None
        pooled = self.nr_nodes > 1 and range_ == "vmalloc"
        node_id = cpu % self.nr_nodes if pooled else -1
        addr = None
        if pooled:
            # node_alloc(): lockless list_empty() of this CPU's node pool
            idx = (size - 1) >> PAGE_SHIFT
            node = self.nodes[node_id]
            if idx < MAX_VA_SIZE_PAGES and node.pools.get(idx):
                yield self._spent(cpu, pre_ns, lag)
                pre_ns = 0
                lock = node.pool_lock
                extra = yield from (lock.take_lagged(cpu) if fast else lock.take(cpu))
                va = self._node_pool_del_va(node, idx, align)
                # list_del() of the pool head: one line written
                ns = self._touch_ns(cpu, lock, 0, 1)
                yield lock.section(cpu, int(ns + extra))
                lock.leave(cpu)
                if va is not None:
                    addr = va.addr
            self.metrics.inc("vmap.pool_misses" if addr is None else "vmap.pool_hits")
        purged = False
        while addr is None:
            # kmem_cache_alloc_node() of the vmap_area, then
            # preload_this_cpu_lock(): a spare for an NE split
            pre_ns += self.slab_ns
            if not self._preload[cpu]:
                pre_ns += self.slab_ns
                self._preload[cpu] = 1
            yield self._spent(cpu, pre_ns, lag)
            pre_ns = 0
            lock = self.free_lock
            extra = yield from (lock.take_lagged(cpu) if fast else lock.take(cpu))
            released = self.kva.released
            addr, visits, fit = self.kva.alloc(size, align, vstart=vstart, vend=vend)
            if fit == "NE":
                self._preload[cpu] = 0
            kva = self.kva
            work = (
                self._touch_ns(cpu, lock, visits - kva.written, kva.written)
                + (kva.released - released) * self.slab_ns
            )
            yield lock.section(cpu, int(work + extra))
            lock.leave(cpu)
            if addr is None:
                if purged:
                    # no vmap_notify_list notifier frees anything in the model
                    self.metrics.inc("vmap.alloc_failures")
                    return None
                yield from self._pay_lag(cpu, lag)
                yield from self.reclaim_and_purge(cpu)
                purged = True
        area = VmArea(addr, size, 0, node_id, 0, range_, va_flags, has_vm)
        # insert_vmap_area() into the busy tree of the node owning the address
        node = self._addr_node(addr)
        lock = node.busy_lock
        extra = yield from (lock.take_lagged(cpu) if fast else lock.take(cpu))
        node.busy[addr] = area
        self.used_bytes += size
        # rb_link_node + rebalance: estimate two lines written
        ns = self._touch_ns(cpu, lock, rb_depth(len(node.busy)) - 2, 2)
        yield lock.section(cpu, int(ns + extra))
        lock.leave(cpu)
        return area

    def _node_pool_del_va(self, node: _Node, idx: int, align: int) -> VmArea | None:
        """node_pool_del_va() under pool_lock: take the newest, if aligned."""
        pool = node.pools.get(idx)
        if not pool:
            return None
        va = pool[-1]
        if va.addr % align:
            # list_move_tail(): the misaligned head goes to the far end
            pool.insert(0, pool.pop())
            return None
        pool.pop()
        return va

    def _find_unlink(self, cpu: int, addr: int, fast: bool = False):
        """find_unlink_vmap_area(): the address's node first, then the others.
        ``fast``: the fast lock model's section (as _alloc_vmap_area)."""
        node = self._addr_node(addr)
        lock = node.busy_lock
        extra = yield from (lock.take_lagged(cpu) if fast else lock.take(cpu))
        area = node.busy.pop(addr, None)
        # rb_erase: estimate two lines written
        ns = self._touch_ns(cpu, lock, rb_depth(len(node.busy) + 1) - 2, 2)
        yield lock.section(cpu, int(ns + extra))
        lock.leave(cpu)
        if area is None:
            for other in self.nodes:
                if other is node:
                    continue
                extra = yield from other.busy_lock.take(cpu)
                area = other.busy.pop(addr, None)
                yield self.env.timeout(
                    int(self.visit_ns * rb_depth(len(other.busy) + 1) + extra)
                )
                other.busy_lock.release(cpu)
                if area is not None:
                    break
        if area is not None:
            self.used_bytes -= area.size
        return area

    def _decay_va_pool_node(self, cpu: int, vn: _Node, full: bool):
        """decay_va_pool_node(): detach each pool, return ~25 % (or all)."""
        classes = [i for i, p in vn.pools.items() if p]
        if not classes:
            return
        back: list[tuple[int, int]] = []
        remain = 0
        for i in classes:
            pool = vn.pools[i]
            n = len(pool) if full else len(pool) >> POOL_DECAY_SHIFT
            if n:
                # the list head is the newest entry: decay takes those first
                back.extend((a.addr, a.size) for a in pool[-n:])
                del pool[-n:]
            if pool:
                remain += 1
        # list_replace_init() per size class under pool_lock, then the partly
        # decayed ones are put back under it again
        sections = len(classes) + remain
        yield from vn.pool_lock.hold(
            cpu,
            sections * self.visit_ns + (sections - 1) * self.uncontended_ns,
        )
        if back:
            # merge_or_add_vmap_area() into a local decay tree (no lock)
            local = KvaSpace.empty(KVA_START, KVA_END)
            visits = sum(local.free(s, size) for s, size in back)
            yield self.env.timeout(int(visits * self.visit_ns))
            yield from self._reclaim_list_global(
                cpu, [(s, e - s) for s, e in local.blocks()]
            )
