"""mm/vmalloc.c: KVA allocation, vmalloc/vfree, vm_map_ram, lazy purge, readers.

Kernel functions modelled, step by step with their locks:

- ``__vmalloc_node_range()`` -> ``__get_vm_area_node()`` ->
  ``alloc_vmap_area()`` (``node_alloc()`` / ``node_pool_del_va()``, then
  ``preload_this_cpu_lock()`` + ``__alloc_vmap_area()`` under
  ``free_vmap_area_lock``, then ``insert_vmap_area()`` into the busy tree),
  ``__vmalloc_area_node()`` (``vm_area_alloc_pages()`` and
  ``vmap_pages_range()``); on failure ``reclaim_and_purge_vmap_areas()`` and
  one retry;
- ``vfree()`` -> ``remove_vm_area()`` (``find_unlink_vmap_area()``,
  ``vunmap_range_noflush()``, ``free_vmap_area_noflush()``),
  ``vm_reset_perms()`` for ``VM_FLUSH_RESET_PERMS``, ``__free_page()``;
- ``__purge_vmap_area_lazy()`` with ``decay_va_pool_node()``,
  ``purge_vmap_node()`` (parallel helpers via ``schedule_work_on()``) and
  ``reclaim_list_global()``; ``drain_vmap_area_work()`` (workqueue) or the
  caller's ``try_purge_vmap_area_lazy()`` by era;
- ``vm_map_ram()`` / ``vm_unmap_ram()`` with per-CPU ``vmap_block``s:
  ``vb_alloc()``, ``new_vmap_block()``, ``vb_free()``, ``free_vmap_block()``,
  ``purge_fragmented_block(s)()``, ``purge_fragmented_blocks_allcpus()``,
  ``_vm_unmap_aliases()`` / ``vm_unmap_aliases()``;
- readers: ``vread_iter()`` (/proc/kcore) with
  ``find_vmap_area_exceed_addr_lock()``, ``aligned_vread_iter()``,
  ``vmap_ram_vread_iter()``, ``zero_iter()``; /proc/vmallocinfo via
  ``vmalloc_info_show()`` + ``show_purge_info()`` (per-node era) or the
  ``s_start()``/``s_show()``/``s_stop()`` iterator (global era), both under
  fs/seq_file.c ``seq_read_iter()``.

Eras (``kernel.vmap_locking``):

- ``global`` (v5.11-v6.8): one busy tree under ``vmap_area_lock``, the free
  tree under ``free_vmap_area_lock``, lazily freed areas merged into a purge
  tree under ``purge_vmap_area_lock`` (20201116220033.1837-2-urezki@gmail.com).
  Kernels 5.2-5.10 queued lazy areas on a lockless llist instead; the 5.10
  preset is modelled with the purge tree.
- ``per_node`` (v6.9+): ``vmap_node``s with ``busy``, ``lazy`` and size
  ``pool``s; ``free_vmap_area_lock`` is taken on pool misses, for other
  ranges and when purged areas merge back (20240102184633.748113-1-urezki@gmail.com).

Both eras share one free tree over the whole kernel address space, as
``vmap_init_free_space()`` builds it ([1, ULONG_MAX) minus early areas);
a named range (``vmalloc``, ``modules``) only sets ``vstart``/``vend``.

Costs come from the profile's ``kernel_costs``: one ``rb_node_visit_ns``
per tree node the operation really touches (``KvaSpace`` counts them; busy
and lazy trees charge their depth), a PTE write per page, a slab
allocation per ``vm_struct``/``vmap_area``/``vmap_block`` object. The
physical side (``vm_area_alloc_pages()``, ``__free_page()``) is charged per
page here, in methods of their own so the buddy-allocator model can take
their place.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SHIFT, PMD_SIZE
from simcore.errors import CaptureError, SimulationError
from simcore.hooks import tracepoint
from simcore.kernel.kva import KvaSpace
from simcore.kernel.page_alloc import BULK_CHUNK, MAX_PAGE_ORDER
from simcore.kernel.vmallocinfo import (
    VmallocInfoEntry,
    unpurged_line,
    vm_line,
    vm_map_ram_line,
)

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


# vmap_init_free_space(): the free tree starts as [1, ULONG_MAX) minus the
# early vmlist areas.
KVA_START = 1
KVA_END = (1 << 64) - 1

# include/linux/vmalloc.h vm_struct flags
VM_IOREMAP = 0x1
VM_ALLOC = 0x2
VM_MAP = 0x4
VM_USERMAP = 0x8
VM_DMA_COHERENT = 0x10
VM_NO_GUARD = 0x40
VM_FLUSH_RESET_PERMS = 0x100
VM_ALLOW_HUGE_VMAP = 0x400  # v5.18+ (559089e0a93d); opt-in huge mappings
VM_SPARSE = 0x1000
# v5.13-v5.17 had the opposite, VM_NO_HUGE_VMAP (also 0x400): huge was the
# default where the arch allowed it. The model gives it a bit of its own so
# a strategy can ask for huge and still be vetoed, as modules were.
VM_NO_HUGE_VMAP = 1 << 30
_FLAG_OF_WORD = {
    "ioremap": VM_IOREMAP,
    "sparse": VM_SPARSE,
    "vmalloc": VM_ALLOC,
    "vmap": VM_MAP,
    "user": VM_USERMAP,
    "dma-coherent": VM_DMA_COHERENT,
}
# mm/vmalloc.c vmap_area->flags sub-types
VMAP_RAM = 0x1
VMAP_BLOCK = 0x2

# mm/vmalloc.c: pools hold areas of at most MAX_VA_SIZE_PAGES (256) pages,
# guard page included; pool index = (size - 1) / PAGE_SIZE.
MAX_VA_SIZE_PAGES = 256
# decay_va_pool_node(): n_decay >>= 2 (~25 %) unless full_decay.
POOL_DECAY_SHIFT = 2
# vmap_init_nodes(): a vmap_node owns 16-page zones (vmap_zone_size).
VMAP_ZONE_SHIFT = 4 + PAGE_SHIFT

# --- per-CPU vmap blocks (mm/vmalloc.c "Per cpu kva allocator") ------------
# CONFIG_NR_CPUS: arch/x86/Kconfig NR_CPUS_DEFAULT is 8192 with MAXSMP,
# which x86-64 distribution kernels enable (recalled: Fedora/RHEL set
# CONFIG_MAXSMP=y, Ubuntu sets NR_CPUS=8192). VMAP_BBMAP_BITS depends on
# this compile-time value, not on the CPUs online.
NR_CPUS = 8192
BITS_PER_LONG = 64
VMALLOC_SPACE = 128 << 30  # 64-bit sizing hint, not the real range
VMALLOC_PAGES = VMALLOC_SPACE // PAGE
VMAP_MAX_ALLOC = BITS_PER_LONG  # pages; larger vm_map_ram goes to alloc_vmap_area
VMAP_BBMAP_BITS_MAX = 1024
VMAP_BBMAP_BITS_MIN = VMAP_MAX_ALLOC * 2


def _roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def vmap_bbmap_bits(nr_cpus: int) -> int:
    """VMAP_BBMAP_BITS for a kernel built with CONFIG_NR_CPUS = nr_cpus."""
    per_cpu = VMALLOC_PAGES // _roundup_pow_of_two(nr_cpus) // 16
    return min(VMAP_BBMAP_BITS_MAX, max(VMAP_BBMAP_BITS_MIN, per_cpu))


VMAP_BBMAP_BITS = vmap_bbmap_bits(NR_CPUS)
VMAP_BLOCK_SIZE = VMAP_BBMAP_BITS * PAGE
# Purge a fragmented block only when less than a quarter of it is free.
VMAP_PURGE_THRESHOLD = VMAP_BBMAP_BITS // 4

# --- readers ------------------------------------------------------------------
# fs/seq_file.c: the seq buffer starts at PAGE_SIZE and doubles on overflow.
SEQ_BUF_BYTES = PAGE
# Estimate: one /proc/vmallocinfo line is a seq_printf() with %pK twice and
# %pS (kallsyms lookup: a binary search over ~10^5 symbols plus name
# decompression) and a few integers, about 2,000 cycles at 2.5 GHz.
SEQ_LINE_NS = 800
# Estimate: copy_page_to_iter_nofault() reads and writes each line where
# zeroing (kernel_costs.page_zero_ns) only writes it, so a copied page costs
# about twice a zeroed one.
COPY_PAGE_FACTOR = 2
# vmalloc_to_page() on 4-level paging: pgd, pud, pmd and pte entries, one
# dependent load each (the p4d level is folded).
PAGE_WALK_LOADS = 4


@dataclass(slots=True, eq=False)
class VmArea:
    """struct vmap_area with its vm_struct (``has_vm``) when it has one."""

    addr: int
    size: int  # bytes of KVA, guard page included
    nr_pages: int  # pages backing it (no guard)
    node: int  # vmap_node that allocated it (decode_vn_id), -1 for none
    flags: int  # vm_struct flags
    range: str
    va_flags: int = 0  # VMAP_RAM | VMAP_BLOCK
    has_vm: bool = True
    caller: str | None = None
    phys: int | None = None
    numa: tuple[tuple[int, int], ...] = ()
    pages: list[int] = field(default_factory=list)  # pfns, vm->pages
    page_shift: int = PAGE_SHIFT  # vm->page_order + PAGE_SHIFT

    @property
    def end(self) -> int:
        return self.addr + self.size


class VmapBlock:
    """struct vmap_block: one VMAP_BLOCK_SIZE area carved by bump allocation."""

    __slots__ = ("va", "lock", "free", "dirty", "dirty_min", "dirty_max", "used", "cpu")

    def __init__(self, va: VmArea, lock, cpu: int, order: int) -> None:
        self.va = va
        self.lock = lock
        self.free = VMAP_BBMAP_BITS - (1 << order)
        self.dirty = 0
        self.dirty_min = VMAP_BBMAP_BITS
        self.dirty_max = 0
        self.used = (1 << (1 << order)) - 1  # used_map bitmap
        self.cpu = cpu


class _Vbq:
    """struct vmap_block_queue: a CPU's free block list and its xarray."""

    __slots__ = ("lock", "xa_lock", "free", "xa")

    def __init__(self, kernel: Kernel) -> None:
        m = kernel.machine
        self.lock = m.spinlock("vbq_lock")
        self.xa_lock = m.spinlock("vmap_blocks_xa_lock")
        self.free: list[VmapBlock] = []
        self.xa: dict[int, VmapBlock] = {}


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


class VreadResult(NamedTuple):
    count: int  # bytes the read advanced
    copied: int  # bytes copied from mapped pages
    zeroed: int  # bytes zero-filled (holes, guard pages, unmapped parts)
    areas: int  # areas visited


def _fragmented(vb: VmapBlock) -> bool:
    """All of the block is free or dirty, and not all of it dirty yet."""
    return vb.free + vb.dirty == VMAP_BBMAP_BITS and vb.dirty != VMAP_BBMAP_BITS


def _depth(n: int) -> int:
    """Nodes a descent of a balanced tree of n entries touches."""
    return n.bit_length() if n > 1 else 1


class Vmalloc:
    def __init__(
        self, kernel: Kernel, *, ranges: dict[str, tuple[int, int]] | None = None
    ) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.hooks = kernel.hooks
        m = kernel.machine
        prof = kernel.profile
        k = kernel.knobs
        c = prof.kernel_costs
        self.nr_cpus = kernel.nr_cpus
        self.visit_ns = c.rb_node_visit_ns.value
        self.pte_ns = c.pte_write_ns.value
        self.slab_ns = c.slab_alloc_ns.value
        self.copy_page_ns = COPY_PAGE_FACTOR * c.page_zero_ns.value
        self.walk_ns = PAGE_WALK_LOADS * self.visit_ns
        # show_numa_info() reads each page's flags: a struct page per page,
        # estimated LLC-resident
        self.numa_page_ns = prof.memory.llc_hit_ns.value
        # decay_va_pool_node() reads list_empty() of all 256 pools of a node:
        # struct vmap_pool is 24 bytes (list_head + len), so 96 consecutive
        # cache lines; estimate: independent, prefetched loads cost about one
        # L1 hit per line
        self.pool_scan_ns = MAX_VA_SIZE_PAGES * 24 // 64 * prof.memory.l1_hit_ns.value
        self.wakeup_ns = int(round(prof.locks.mutex_wakeup_ns.value))
        self.per_node = k.vmap_locking == "per_node"
        self.nr_nodes = k.vmap_nodes if self.per_node else 1
        self.lazy_max_pages = k.lazy_max_pages
        self.in_workqueue = k.drain_in_workqueue
        self.uncontended_ns = m.uncontended_ns
        self.page_alloc = kernel.page_alloc
        self.pt = kernel.pagetables
        self.bulk = k.page_alloc != "single"
        self.high_order_first = k.page_alloc == "high_order"
        self.layout = kernel.layout
        self.ranges = dict(self.layout.ranges)
        if ranges:
            self.ranges.update(ranges)
        self.kva = KvaSpace(KVA_START, KVA_END)
        self.free_lock = m.spinlock("free_vmap_area_lock")
        self.purge_lock = m.mutex("vmap_purge_lock")
        self.nodes = [_Node(kernel, i, self.per_node) for i in range(self.nr_nodes)]
        if not self.per_node:
            # 5.11-6.8: lazily freed areas are merged into an address-sorted
            # purge tree under its own spinlock
            self.purge_area_lock = m.spinlock("purge_vmap_area_lock")
            self.lazy_tree = KvaSpace.empty(KVA_START, KVA_END)
        self._preload = bytearray(self.nr_cpus)  # ne_fit_preload_node per CPU
        self._vbqs: dict[int, _Vbq] = {}
        self.lazy_nr = 0
        self.used_bytes = 0  # publishes vmap.used_bytes
        self.drain_pending = False

    # -- helpers ---------------------------------------------------------------
    def _hold2(self, cpu: int, outer, inner, work_ns: float):
        """Nested sections (``vb->lock`` then ``vbq->lock``) as one hold."""
        work_ns += yield from outer.take(cpu)
        work_ns += yield from inner.take(cpu)
        yield self.env.timeout(int(work_ns))
        inner.release(cpu)
        outer.release(cpu)

    @property
    def used_bytes(self) -> int:
        """KVA in busy areas, guard pages included (``vmap.used_bytes``)."""
        return self._used_bytes

    @used_bytes.setter
    def used_bytes(self, value: int) -> None:
        # published where it changes, so timeseries samples are never stale
        self._used_bytes = value
        self.metrics.counters["vmap.used_bytes"] = value

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

    def _range_of(self, addr: int) -> str:
        for name, (lo, hi) in self.ranges.items():
            if lo <= addr < hi:
                return name
        return "other"

    def _flush(self, cpu: int, start: int, end: int) -> int:
        """flush_tlb_kernel_range(); returns the initiator's latency."""
        return self.kernel.machine.flush.kernel_range(cpu, start, end)

    def find_vmap_area(self, addr: int) -> VmArea | None:
        """The busy area starting at ``addr`` (no time charged)."""
        return self._addr_node(addr).busy.get(addr)

    # -- physical pages ------------------------------------------------------------
    def vm_area_alloc_pages(self, cpu: int, area: VmArea, order: int, zero: bool):
        """vm_area_alloc_pages(): fill ``area.pages``; returns the lock-free
        ns still to spend when all came, None when they did not.

        Order 0 first tries high orders in the ``high_order`` era
        (20251014182754.4329-1-vishal.moola@gmail.com), then goes through
        alloc_pages_bulk() in requests of at most 100 pages (v5.13+; one
        alloc_page() per page in the ``single`` era), then
        single pages for what the bulk call left. Higher orders (huge
        mappings) are one alloc_pages_node(order) each, split_page()d so
        that vfree() can free them page by page; the first failure ends the
        attempt (``__GFP_NORETRY``) and the caller falls back to 4K.
        """
        pa = self.page_alloc
        want = area.nr_pages
        pages = area.pages
        if order == 0 and self.high_order_first:
            # late 2025: opportunistic orders min(ilog2(remaining), 10), no
            # reclaim, each success split_page()d; the first failure drops
            # to the bulk path for what is left
            while want - len(pages) >= 2:
                o = min((want - len(pages)).bit_length() - 1, MAX_PAGE_ORDER)
                pfn = yield from pa.alloc_pages(cpu, o, zero=zero)
                if pfn is None:
                    break
                yield from pa.split_page(cpu, pfn, o)
                pages.extend(range(pfn, pfn + (1 << o)))
        if order == 0 and self.bulk:
            while len(pages) < want:
                req = min(BULK_CHUNK, want - len(pages))
                got, ns = yield from pa.alloc_pages_bulk_ns(cpu, req, zero=zero)
                pages.extend(got)
                if len(pages) == want:
                    # the last chunk's lock-free part goes with the mapping
                    return ns
                yield self.env.timeout(int(ns))
                if len(got) != req:
                    break
        step = 1 << order
        while len(pages) < want:
            pfn = yield from pa.alloc_pages(cpu, order, zero=zero)
            if pfn is None:
                return None
            if order:
                yield from pa.split_page(cpu, pfn, order)
                pages.extend(range(pfn, pfn + step))
            else:
                pages.append(pfn)
        return 0.0

    def free_pages(self, cpu: int, area: VmArea):
        """vfree()'s loop of __free_page() over ``area.pages``; returns
        the lock-free ns still to spend."""
        if not area.pages:
            return 0.0
        ns = yield from self.page_alloc.free_pages_batch_ns(cpu, area.pages)
        area.pages = []
        return ns

    def direct_map_span(self, area: VmArea) -> tuple[int, int]:
        """vm_reset_perms(): the direct-map [start, end) its pages span."""
        pt = self.pt
        lo = min(area.pages)
        hi = max(area.pages)
        return pt.page_address(lo), pt.page_address(hi) + PAGE

    def vm_reset_perms(self, cpu: int, area: VmArea):
        """vm_reset_perms(): make the direct-map alias of each page invalid,
        flush the vmalloc range and that alias span at once
        (_vm_unmap_aliases() with flush_dmap), then restore the alias."""
        start, end = self.direct_map_span(area)
        cpa, pt = self.kernel.cpa, self.pt
        for pfn in area.pages:
            yield from cpa.set_direct_map_invalid_noflush(cpu, pt.page_address(pfn))
        yield from self._vm_unmap_aliases(cpu, start, end, True)
        for pfn in area.pages:
            yield from cpa.set_direct_map_default_noflush(cpu, pt.page_address(pfn))

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
    ):
        """alloc_vmap_area(); ``pre_ns`` is lock-free work done before it."""
        vstart, vend = self.ranges[range_]
        fast = self.nr_nodes > 1 and range_ == "vmalloc"
        node_id = cpu % self.nr_nodes if fast else -1
        addr = None
        if fast:
            # node_alloc(): lockless list_empty() of this CPU's node pool
            idx = (size - 1) >> PAGE_SHIFT
            node = self.nodes[node_id]
            if idx < MAX_VA_SIZE_PAGES and node.pools.get(idx):
                yield self.env.timeout(int(pre_ns))
                pre_ns = 0
                extra = yield from node.pool_lock.take(cpu)
                va = self._node_pool_del_va(node, idx, align)
                # list_del() of the pool head: one line written
                ns = self._touch_ns(cpu, node.pool_lock, 0, 1)
                yield self.env.timeout(int(ns + extra))
                node.pool_lock.release(cpu)
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
            yield self.env.timeout(int(pre_ns))
            pre_ns = 0
            extra = yield from self.free_lock.take(cpu)
            released = self.kva.released
            addr, visits, fit = self.kva.alloc(size, align, vstart=vstart, vend=vend)
            if fit == "NE":
                self._preload[cpu] = 0
            kva = self.kva
            work = (
                self._touch_ns(cpu, self.free_lock, visits - kva.written, kva.written)
                + (kva.released - released) * self.slab_ns
            )
            yield self.env.timeout(int(work + extra))
            self.free_lock.release(cpu)
            if addr is None:
                if purged:
                    # no vmap_notify_list notifier frees anything in the model
                    self.metrics.inc("vmap.alloc_failures")
                    return None
                yield from self.reclaim_and_purge(cpu)
                purged = True
        area = VmArea(addr, size, 0, node_id, 0, range_, va_flags, has_vm)
        # insert_vmap_area() into the busy tree of the node owning the address
        node = self._addr_node(addr)
        extra = yield from node.busy_lock.take(cpu)
        node.busy[addr] = area
        self.used_bytes += size
        # rb_link_node + rebalance: estimate two lines written
        ns = self._touch_ns(cpu, node.busy_lock, _depth(len(node.busy)) - 2, 2)
        yield self.env.timeout(int(ns + extra))
        node.busy_lock.release(cpu)
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

    def _find_unlink(self, cpu: int, addr: int):
        """find_unlink_vmap_area(): the address's node first, then the others."""
        node = self._addr_node(addr)
        extra = yield from node.busy_lock.take(cpu)
        area = node.busy.pop(addr, None)
        # rb_erase: estimate two lines written
        ns = self._touch_ns(cpu, node.busy_lock, _depth(len(node.busy) + 1) - 2, 2)
        yield self.env.timeout(int(ns + extra))
        node.busy_lock.release(cpu)
        if area is None:
            for other in self.nodes:
                if other is node:
                    continue
                extra = yield from other.busy_lock.take(cpu)
                area = other.busy.pop(addr, None)
                yield self.env.timeout(
                    int(self.visit_ns * _depth(len(other.busy) + 1) + extra)
                )
                other.busy_lock.release(cpu)
                if area is not None:
                    break
        if area is not None:
            self.used_bytes -= area.size
        return area

    # -- vmalloc -----------------------------------------------------------------
    @tracepoint("vmalloc")
    def vmalloc(
        self,
        cpu: int,
        size: int,
        *,
        range_: str = "vmalloc",
        align: int = PAGE,
        flags: int = 0,
        caller: str | None = None,
        zero: bool = False,
    ):
        """__vmalloc_node_range(): returns the VmArea, or None on failure.

        With ``VM_ALLOW_HUGE_VMAP`` (vmalloc_huge()) and at least a PMD of
        size, the area is PMD-aligned and sized and backed by order-9 pages
        mapped with 2M leaves; when those run out the whole attempt is
        undone and retried with 4K pages (``vmalloc.huge_fallbacks``).
        ``zero`` is vzalloc()'s __GFP_ZERO.
        """
        t0 = self.env.now
        shift = PAGE_SHIFT
        huge = flags & VM_ALLOW_HUGE_VMAP and not flags & VM_NO_HUGE_VMAP
        if huge and size >= PMD_SIZE:
            shift = PMD_SHIFT
        while True:
            area = yield from self._vmalloc_node_range(
                cpu, size, range_, align, flags, caller, zero, shift
            )
            if area is not None or shift == PAGE_SHIFT:
                break
            # fail: "if (shift > PAGE_SHIFT) { shift = PAGE_SHIFT; ... goto again; }"
            self.metrics.inc("vmalloc.huge_fallbacks")
            shift = PAGE_SHIFT
        if area is None:
            return None
        self.metrics.latency("vmalloc", self.env.now - t0)
        return area

    def _vmalloc_node_range(self, cpu, size, range_, align, flags, caller, zero, shift):
        """One pass of __vmalloc_node_range(): __get_vm_area_node() then
        __vmalloc_area_node() (vm_area_alloc_pages(), vmap_pages_range())."""
        if shift > PAGE_SHIFT:
            step = 1 << shift
            align = max(align, step)
            size = -(-size // step) * step
        nr_pages = -(-size // PAGE)
        va_size = nr_pages * PAGE + (0 if flags & VM_NO_GUARD else PAGE)
        # kzalloc_node() of the vm_struct, and the kvmalloc_array() of the
        # page pointers that follows alloc_vmap_area(), both lock-free slab
        # work folded into one timeout
        area = yield from self._alloc_vmap_area(
            cpu, va_size, align, range_, pre_ns=2 * self.slab_ns
        )
        if area is None:
            return None
        area.nr_pages = nr_pages
        area.flags = flags | VM_ALLOC
        area.caller = caller
        area.page_shift = shift
        ns = yield from self.vm_area_alloc_pages(cpu, area, shift - PAGE_SHIFT, zero)
        ok = ns is not None
        if ok:
            # vmap_pages_range(): no flush, the range was flushed before reuse
            ok = yield from self.pt.vmap_pages_range(
                cpu, area.addr, area.pages, page_shift=shift, pre_ns=ns
            )
        if not ok:
            # __vmalloc_area_node() fail: vfree() of what was set up
            area.flags &= ~VM_FLUSH_RESET_PERMS
            yield from self.vfree(cpu, area)
            if shift == PAGE_SHIFT:
                self.metrics.inc("vmap.alloc_failures")
            return None
        return area

    def get_vm_area(self, cpu: int, size: int, *, flags: int = 0, range_="vmalloc"):
        """get_vm_area() / __get_vm_area_node(): KVA only, no pages (the
        caller maps what it wants, e.g. bpf_arena with VM_SPARSE)."""
        nr = -(-size // PAGE)
        va_size = nr * PAGE + (0 if flags & VM_NO_GUARD else PAGE)
        area = yield from self._alloc_vmap_area(
            cpu, va_size, PAGE, range_, pre_ns=self.slab_ns
        )
        if area is None:
            return None
        area.flags = flags
        return area

    def free_vm_area(self, cpu: int, area: VmArea):
        """free_vm_area(): remove_vm_area() (clears whatever the owner left
        mapped, frees the KVA lazily); the owner frees its own pages."""
        va = yield from self._find_unlink(cpu, area.addr)
        if va is None:
            raise SimulationError(f"free_vm_area of unknown area {area.addr:#x}")
        yield from self.pt.vunmap_range_noflush(cpu, area.addr, area.size - PAGE)
        yield from self._free_vmap_area_noflush(cpu, va)

    # -- vfree -------------------------------------------------------------------
    @tracepoint("vfree")
    def vfree(self, cpu: int, area: VmArea):
        """vfree(): unlink, clear PTEs, lazily free the KVA, reset the
        direct map for VM_FLUSH_RESET_PERMS, free the pages."""
        t0 = self.env.now
        va = yield from self._find_unlink(cpu, area.addr)
        if va is None:
            raise SimulationError(f"vfree of unknown area {area.addr:#x}")
        # vunmap_range_noflush(): clear the PTEs only (lock-free, so its time
        # is spent together with the page frees at the end: one event less)
        ns = self.pt.vunmap_ns(area.addr, area.nr_pages * PAGE)
        yield from self._free_vmap_area_noflush(cpu, va)
        if area.flags & VM_FLUSH_RESET_PERMS and area.pages:
            yield from self.vm_reset_perms(cpu, area)
        ns += yield from self.free_pages(cpu, area)
        yield self.env.timeout(int(ns))
        self.metrics.latency("vfree", self.env.now - t0)

    def _free_vmap_area_noflush(self, cpu: int, area: VmArea):
        """free_vmap_area_noflush(): account the whole area, guard included."""
        self.lazy_nr += area.size >> PAGE_SHIFT
        nr_lazy = self.lazy_nr
        if self.per_node:
            vn = self.nodes[area.node] if area.node >= 0 else self._addr_node(area.addr)
            extra = yield from vn.lazy_lock.take(cpu)
            vn.lazy.append(area)
            ns = self._touch_ns(cpu, vn.lazy_lock, _depth(len(vn.lazy)) - 1, 1)
            yield self.env.timeout(int(ns + extra))
            vn.lazy_lock.release(cpu)
        else:
            extra = yield from self.purge_area_lock.take(cpu)
            visits = self.lazy_tree.free(area.addr, area.size)
            t = self.lazy_tree
            ns = self._touch_ns(
                cpu, self.purge_area_lock, visits - t.written, t.written
            )
            yield self.env.timeout(int(ns + extra))
            self.purge_area_lock.release(cpu)
        if nr_lazy > self.lazy_max_pages:
            if self.in_workqueue:
                if not self.drain_pending:
                    # schedule_work(&drain_vmap_work): a no-op while pending
                    self.drain_pending = True
                    self.env.process(self._drain_work(cpu))
            elif self.purge_lock.owner is None:
                # try_purge_vmap_area_lazy(): mutex_trylock, skip if busy
                self.purge_lock.acquire(cpu)
                yield from self._purge_lazy(cpu, KVA_END, 0, False)
                self.purge_lock.release(cpu)

    def _drain_work(self, cpu: int):
        """drain_vmap_area_work() on this CPU's kworker."""
        yield self.env.timeout(self.wakeup_ns)
        self.drain_pending = False
        while True:
            yield from self.purge(cpu)
            # v5.18-v6.8 re-checked and drained again while over the limit
            # (20220119143540.601149-1-urezki@gmail.com); v6.9 drains once
            if self.per_node or self.lazy_nr <= self.lazy_max_pages:
                break

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
        if jobs:  # flush_work() on each helper
            yield self.env.all_of(jobs)
        self.metrics.inc("vmap.lazy_purges")
        self.metrics.latency("vmap_purge", self.env.now - t0)
        return True

    def _purge_lazy_global(self, cpu: int, start: int, end: int, t0: int):
        """v5.11-v6.8: detach the purge tree, flush once, merge under the lock."""
        if len(self.lazy_tree) == 0:
            return False
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

    def _purge_helper(self, cpu: int, vn: _Node):
        # a kworker on another CPU: woken by the queued work item
        yield self.env.timeout(self.wakeup_ns)
        yield from self._purge_vmap_node(cpu, vn)

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

    # -- vm_map_ram / vmap blocks ---------------------------------------------------
    def _vbq(self, cpu: int) -> _Vbq:
        q = self._vbqs.get(cpu)
        if q is None:
            q = self._vbqs[cpu] = _Vbq(self.kernel)
        return q

    def _vb_xa(self, addr: int) -> _Vbq:
        # addr_to_vb_xa(): blocks hashed over the per-CPU xarrays
        return self._vbq((addr // VMAP_BLOCK_SIZE) % self.nr_cpus)

    def _vb_idx(self, addr: int) -> int:
        # addr_to_vb_idx()
        return (
            addr - (self.layout.vmalloc_start & ~(VMAP_BLOCK_SIZE - 1))
        ) // VMAP_BLOCK_SIZE

    def vm_map_ram(self, cpu: int, pages: list[int]):
        """vm_map_ram(pages, count): map the caller's pfns; returns the
        address, or None on failure."""
        count = len(pages)
        if count <= 0:
            raise ValueError("vm_map_ram of no pages")
        t0 = self.env.now
        if count <= VMAP_MAX_ALLOC:
            addr, ns = yield from self._vb_alloc(cpu, count)
        else:
            va = yield from self._alloc_vmap_area(
                cpu,
                count * PAGE,
                PAGE,
                "vmalloc",
                pre_ns=0,
                va_flags=VMAP_RAM,
                has_vm=False,
            )
            addr = None if va is None else va.addr
            if va is not None:
                va.nr_pages = count
            ns = 0.0
        if addr is None:
            self.metrics.inc("vmap.alloc_failures")
            return None
        yield self.env.timeout(int(ns))
        # vmap_pages_range() of the caller's pages
        ok = yield from self.pt.vmap_pages_range(cpu, addr, pages)
        if not ok:
            yield from self.vm_unmap_ram(cpu, addr, count)
            self.metrics.inc("vmap.alloc_failures")
            return None
        self.metrics.latency("vm_map_ram", self.env.now - t0)
        return addr

    def _vb_alloc(self, cpu: int, count: int):
        """vb_alloc(): bump-allocate 2^order pages from this CPU's blocks.

        Returns (address or None, lock-free ns still to charge).
        """
        order = (count - 1).bit_length()  # get_order(count * PAGE_SIZE)
        need = 1 << order
        vbq = self._vbq(cpu)
        walked = 0
        for vb in list(vbq.free):  # list_for_each_entry_rcu
            walked += 1
            if vb.free < need:  # READ_ONCE, no lock
                continue
            extra = yield from vb.lock.take(cpu)
            if vb.free < need:
                vb.lock.release(cpu)
                continue
            pages_off = VMAP_BBMAP_BITS - vb.free
            vb.free -= need
            vb.used |= ((1 << need) - 1) << pages_off
            work = self.visit_ns + extra
            if vb.free == 0:
                # list_del_rcu() under vbq->lock
                extra = yield from vbq.lock.take(cpu)
                if vb in vbq.free:
                    vbq.free.remove(vb)
                work += self.visit_ns + extra
                yield self.env.timeout(int(work))
                vbq.lock.release(cpu)
            else:
                yield self.env.timeout(int(work))
            vb.lock.release(cpu)
            # The lockless list walk happened before the lock; charging it
            # after the section moves the acquisition by a few ns and saves
            # a SimPy event.
            return vb.va.addr + (pages_off << PAGE_SHIFT), walked * self.visit_ns
        addr = yield from self._new_vmap_block(cpu, order)
        return addr, walked * self.visit_ns

    def _new_vmap_block(self, cpu: int, order: int):
        """new_vmap_block(): a fresh block, its first 2^order pages in use."""
        va = yield from self._alloc_vmap_area(
            cpu,
            VMAP_BLOCK_SIZE,
            VMAP_BLOCK_SIZE,
            "vmalloc",
            pre_ns=self.slab_ns,  # kmalloc_node() of the vmap_block
            va_flags=VMAP_RAM | VMAP_BLOCK,
            has_vm=False,
        )
        if va is None:
            return None
        va.nr_pages = VMAP_BBMAP_BITS
        vb = VmapBlock(va, self.kernel.machine.spinlock("vb_lock"), cpu, order)
        xa = self._vb_xa(va.addr)
        extra = yield from xa.xa_lock.take(cpu)
        xa.xa[self._vb_idx(va.addr)] = vb  # xa_insert()
        yield self.env.timeout(int(self.visit_ns * 2 + extra))
        xa.xa_lock.release(cpu)
        vbq = self._vbq(cpu)
        extra = yield from vbq.lock.take(cpu)
        vbq.free.append(vb)  # list_add_tail_rcu()
        yield self.env.timeout(int(self.visit_ns + extra))
        vbq.lock.release(cpu)
        self.metrics.inc("vmap.blocks")
        return va.addr

    def vm_unmap_ram(self, cpu: int, addr: int, count: int):
        """vm_unmap_ram(mem, count): no flush; the KVA is recycled lazily."""
        t0 = self.env.now
        if count <= VMAP_MAX_ALLOC:
            yield from self._vb_free(cpu, addr, count)
        else:
            va = yield from self._find_unlink(cpu, addr)
            if va is None:
                raise SimulationError(f"vm_unmap_ram of unknown area {addr:#x}")
            # free_unmap_vmap_area()
            yield from self.pt.vunmap_range_noflush(cpu, addr, count * PAGE)
            yield from self._free_vmap_area_noflush(cpu, va)
        self.metrics.latency("vm_unmap_ram", self.env.now - t0)

    def _vb_free(self, cpu: int, addr: int, count: int):
        """vb_free(): clear the bits, clear PTEs, widen the dirty range."""
        order = (count - 1).bit_length()
        need = 1 << order
        offset = (addr & (VMAP_BLOCK_SIZE - 1)) >> PAGE_SHIFT
        vb = self._vb_xa(addr).xa.get(self._vb_idx(addr))  # xa_load(), RCU
        if vb is None:
            raise SimulationError(f"vm_unmap_ram of {addr:#x}: no vmap_block")
        mask = ((1 << need) - 1) << offset
        if vb.used & mask != mask:
            raise SimulationError(f"vm_unmap_ram of {addr:#x}: pages not mapped")
        extra = yield from vb.lock.take(cpu)
        vb.used &= ~mask
        yield self.env.timeout(int(2 * self.visit_ns + extra))
        vb.lock.release(cpu)
        # vunmap_range_noflush(): PTEs only, the TLB entries stay until a
        # flush of the dirty range or of the whole block
        yield from self.pt.vunmap_range_noflush(cpu, addr, count * PAGE)
        extra = yield from vb.lock.take(cpu)
        vb.dirty_min = min(vb.dirty_min, offset)
        vb.dirty_max = max(vb.dirty_max, offset + need)
        vb.dirty += need
        full = vb.dirty == VMAP_BBMAP_BITS
        yield self.env.timeout(int(self.visit_ns + extra))
        vb.lock.release(cpu)
        if full:
            yield from self._free_vmap_block(cpu, vb)

    def _free_vmap_block(self, cpu: int, vb: VmapBlock):
        """free_vmap_block(): xa_erase, unlink from busy, free lazily."""
        xa = self._vb_xa(vb.va.addr)
        extra = yield from xa.xa_lock.take(cpu)
        xa.xa.pop(self._vb_idx(vb.va.addr), None)
        yield self.env.timeout(int(self.visit_ns * 2 + extra))
        xa.xa_lock.release(cpu)
        node = self._addr_node(vb.va.addr)
        extra = yield from node.busy_lock.take(cpu)
        node.busy.pop(vb.va.addr, None)
        self.used_bytes -= vb.va.size
        yield self.env.timeout(int(self.visit_ns * _depth(len(node.busy) + 1) + extra))
        node.busy_lock.release(cpu)
        self.metrics.inc("vmap.block_frees")
        yield from self._free_vmap_area_noflush(cpu, vb.va)

    def _purge_fragmented_block(
        self, vb: VmapBlock, purge_list: list[VmapBlock], force: bool
    ) -> bool:
        """purge_fragmented_block() (vb->lock held; vbq->lock taken by caller)."""
        if not _fragmented(vb):
            return False
        # don't overeagerly purge usable blocks unless requested
        if not (force or vb.free < VMAP_PURGE_THRESHOLD):
            return False
        vb.free = 0
        vb.dirty = VMAP_BBMAP_BITS
        vb.dirty_min = 0
        vb.dirty_max = VMAP_BBMAP_BITS
        vbq = self._vbq(vb.cpu)
        if vb in vbq.free:
            vbq.free.remove(vb)
        purge_list.append(vb)
        return True

    def _purge_fragmented_blocks_allcpus(self, cpu: int):
        """purge_fragmented_blocks_allcpus(): force-purge on every CPU."""
        purge: list[VmapBlock] = []
        walk = 0.0
        for c in range(self.nr_cpus):
            walk += self.visit_ns  # rcu_read_lock + list head
            vbq = self._vbqs.get(c)
            if vbq is None:
                continue
            for vb in list(vbq.free):
                walk += self.visit_ns
                if not _fragmented(vb):
                    continue
                yield self.env.timeout(int(walk))
                walk = 0.0
                yield from self._hold2(cpu, vb.lock, vbq.lock, self.visit_ns)
                self._purge_fragmented_block(vb, purge, True)
        yield self.env.timeout(int(walk))
        for vb in purge:  # free_purged_blocks()
            yield from self._free_vmap_block(cpu, vb)

    def vm_unmap_aliases(self, cpu: int):
        """vm_unmap_aliases(): flush every lazy alias (called by x86 CPA)."""
        t0 = self.env.now
        yield from self._vm_unmap_aliases(cpu, KVA_END, 0, False)
        self.metrics.latency("vm_unmap_aliases", self.env.now - t0)

    def _vm_unmap_aliases(self, cpu: int, start: int, end: int, flush: bool):
        """_vm_unmap_aliases(): walk every CPU's blocks, purge, flush."""
        self.metrics.inc("vmap.unmap_aliases")
        yield from self.purge_lock.take(cpu)
        purge: list[VmapBlock] = []
        walk = 0.0
        for c in range(self.nr_cpus):  # for_each_possible_cpu
            walk += self.visit_ns  # xa_for_each() on this CPU's xarray
            vbq = self._vbqs.get(c)
            if vbq is None or not vbq.xa:
                continue
            for vb in list(vbq.xa.values()):
                walk += self.visit_ns
                yield self.env.timeout(int(walk))
                walk = 0.0
                extra = yield from vb.lock.take(cpu)
                work = self.visit_ns + extra
                owner = self._vbq(vb.cpu)
                if _fragmented(vb) and vb.free < VMAP_PURGE_THRESHOLD:
                    work += yield from owner.lock.take(cpu)
                    self._purge_fragmented_block(vb, purge, False)
                    yield self.env.timeout(int(work))
                    owner.lock.release(cpu)
                else:
                    if vb.dirty_max and vb.dirty != VMAP_BBMAP_BITS:
                        s = vb.va.addr + (vb.dirty_min << PAGE_SHIFT)
                        e = vb.va.addr + (vb.dirty_max << PAGE_SHIFT)
                        start = min(start, s)
                        end = max(end, e)
                        # prevent that this is flushed again
                        vb.dirty_min = VMAP_BBMAP_BITS
                        vb.dirty_max = 0
                        flush = True
                    yield self.env.timeout(int(work))
                vb.lock.release(cpu)
        yield self.env.timeout(int(walk))
        for vb in purge:
            yield from self._free_vmap_block(cpu, vb)
        purged = yield from self._purge_lazy(cpu, start, end, False)
        if not purged and flush:
            yield self.env.timeout(self._flush(cpu, start, end))
        self.purge_lock.release(cpu)

    # -- capture seeding ---------------------------------------------------------
    def seed_vmallocinfo(
        self, entries: list[VmallocInfoEntry], *, file: str = "<vmallocinfo>"
    ) -> int:
        """Make the captured areas busy (or lazily freed) before the run.

        Each range is carved out of the free tree as pcpu_get_vm_areas()
        does (pvm_find_va_enclose_addr() + va_clip()). No time is charged:
        the capture is the state at time zero. Returns the areas seeded.
        """
        for e in entries:
            try:
                self.kva.reserve(e.start, e.size)
            except ValueError:
                raise CaptureError(
                    f"area {e.start:#x}-{e.end:#x} overlaps an earlier line",
                    file=file,
                    line=e.line,
                    expected="non-overlapping areas, as the kernel prints them",
                ) from None
            range_ = self._range_of(e.start)
            if e.kind == "unpurged":
                area = VmArea(e.start, e.size, 0, -1, 0, range_, has_vm=False)
                self.lazy_nr += e.size >> PAGE_SHIFT
                if self.per_node:
                    self._addr_node(e.start).lazy.append(area)
                else:
                    self.lazy_tree.free(e.start, e.size)
                continue
            if e.kind == "vm_map_ram":
                area = VmArea(
                    e.start,
                    e.size,
                    e.size >> PAGE_SHIFT,
                    -1,
                    0,
                    range_,
                    va_flags=VMAP_RAM,
                    has_vm=False,
                )
            else:
                flags = 0
                for w in e.flags:
                    flags |= _FLAG_OF_WORD.get(w, 0)
                area = VmArea(
                    e.start,
                    e.size,
                    e.pages,
                    -1,
                    flags,
                    range_,
                    caller=e.caller,
                    phys=e.phys,
                    numa=e.numa,
                )
            self._addr_node(e.start).busy[e.start] = area
            self.used_bytes += e.size
        return len(entries)

    # -- readers -------------------------------------------------------------------
    def _all_busy(self) -> list[VmArea]:
        areas = [a for vn in self.nodes for a in vn.busy.values()]
        areas.sort(key=lambda a: a.addr)
        return areas

    def _block_of(self, area: VmArea) -> VmapBlock | None:
        if not area.va_flags & VMAP_BLOCK:
            return None
        return self._vb_xa(area.addr).xa.get(self._vb_idx(area.addr))

    def _mapped_runs(self, area: VmArea) -> list[tuple[int, int]] | None:
        """The [start, end) parts of ``area`` that vread_iter() copies.

        None: the area is skipped (no vm_struct and no VMAP_RAM flag).
        """
        if area.va_flags & VMAP_RAM:
            if not self.per_node:
                return None  # before v6.3 vread skipped areas without a vm
            vb = self._block_of(area)
            if vb is None:
                return [(area.addr, area.end)]
            runs = []
            bits = vb.used
            off = 0
            while bits:
                low = (bits & -bits).bit_length() - 1
                bits >>= low
                off += low
                width = (~bits & (bits + 1)).bit_length() - 1
                runs.append(
                    (
                        area.addr + (off << PAGE_SHIFT),
                        area.addr + ((off + width) << PAGE_SHIFT),
                    )
                )
                bits >>= width
                off += width
            return runs
        if not area.has_vm:
            return None
        if area.flags & (VM_IOREMAP | VM_SPARSE):
            return []  # treated as a memory hole
        size = area.size - (0 if area.flags & VM_NO_GUARD else PAGE)
        return [(area.addr, area.addr + size)]

    def _copy_ns(self, nbytes: int) -> float:
        # aligned_vread_iter(): vmalloc_to_page() then a copy, per page
        return nbytes / PAGE * (self.copy_page_ns + self.walk_ns)

    def _memcpy_ns(self, nbytes: int) -> float:
        # zero_iter() (a copy of ZERO_PAGE) or a copy of the seq buffer
        return nbytes / PAGE * self.copy_page_ns

    def vread(self, cpu: int, addr: int, count: int):
        """vread_iter(): copy [addr, addr + count) as /proc/kcore reads it.

        Holes, guard pages, ioremap/sparse areas and the unused parts of
        vm_map_ram blocks are zero-filled. Areas are taken from a snapshot of
        the busy trees at the start and skipped if freed meanwhile.
        """
        t0 = self.env.now
        end = addr + count
        copied = zeroed = visited = 0
        cur = addr
        if not self.per_node:
            # one vmap_area_lock section for the whole read
            extra = yield from self.nodes[0].busy_lock.take(cpu)
            areas = self._all_busy()
            i = bisect.bisect_right([a.end for a in areas], addr)
            ns = self.visit_ns * _depth(len(areas)) + extra
            while i < len(areas) and cur < end:
                a = areas[i]
                i += 1
                if a.addr >= end:
                    break
                visited += 1
                c, z, cur = self._read_area(a, cur, end)
                copied += c
                zeroed += z
                ns += self.visit_ns + self._copy_ns(c) + self._memcpy_ns(z)
            yield self.env.timeout(int(ns))
            self.nodes[0].busy_lock.release(cpu)
        else:
            areas = self._all_busy()
            i = bisect.bisect_right([a.end for a in areas], addr)
            while i < len(areas) and cur < end:
                a = areas[i]
                i += 1
                if a.addr >= end:
                    break
                vn = self._addr_node(a.addr)
                if vn.busy.get(a.addr) is not a:
                    continue  # freed since the snapshot
                # find_vmap_area_exceed_addr_lock(): every node's lock in turn
                yield from self._scan_nodes(cpu)
                extra = yield from vn.busy_lock.take(cpu)
                ns = self.visit_ns * _depth(len(vn.busy)) + extra
                visited += 1
                vb = self._block_of(a)
                if vb is not None:
                    ns += yield from vb.lock.take(cpu)
                c, z, cur = self._read_area(a, cur, end)
                copied += c
                zeroed += z
                ns += self._copy_ns(c) + self._memcpy_ns(z)
                yield self.env.timeout(int(ns))
                if vb is not None:
                    vb.lock.release(cpu)
                vn.busy_lock.release(cpu)
        if cur < end:
            zeroed += end - cur
            yield self.env.timeout(int(self._memcpy_ns(end - cur)))
        self.metrics.inc("vread.bytes_copied", copied)
        self.metrics.inc("vread.bytes_zeroed", zeroed)
        self.metrics.latency("vread", self.env.now - t0)
        return VreadResult(count, copied, zeroed, visited)

    def _read_area(self, a: VmArea, cur: int, end: int) -> tuple[int, int, int]:
        """Bytes copied and zeroed from ``cur`` through ``a``; the new cursor."""
        copied = zeroed = 0
        stop = min(end, a.end)
        if cur < a.addr:
            zeroed += min(a.addr, end) - cur
            cur = min(a.addr, end)
        if cur >= stop:
            return copied, zeroed, cur
        runs = self._mapped_runs(a)
        for s, e in runs or ():
            s, e = max(s, cur), min(e, stop)
            if s < e:
                copied += e - s
        zeroed += (stop - cur) - copied
        return copied, zeroed, stop

    def _scan_nodes(self, cpu: int):
        """One lookup in each node's busy tree under its lock, in turn.

        Uncontended sections are marked held at the instant they are taken
        and their time is charged in one timeout after the scan (hold time
        still booked to the lock); a contended lock is waited for.
        """
        acc = 0.0
        for vn in self.nodes:
            ns = self.visit_ns * _depth(len(vn.busy))
            ev = vn.busy_lock.acquire(cpu)
            if ev is not None:
                if acc:
                    yield self.env.timeout(int(acc))
                    acc = 0.0
                yield ev
                yield self.env.timeout(int(ns))
                vn.busy_lock.release(cpu)
                continue
            vn.busy_lock.release(cpu)
            vn.busy_lock.stats.hold_ns += int(ns + self.uncontended_ns)
            acc += ns + self.uncontended_ns
        if acc:
            yield self.env.timeout(int(acc))

    def _info_line(self, a: VmArea) -> str:
        """The line vmalloc_info_show()/s_show() prints for a busy area."""
        if not a.has_vm:
            return vm_map_ram_line(a.addr, a.end) if a.va_flags & VMAP_RAM else ""
        words = {w for w, f in _FLAG_OF_WORD.items() if a.flags & f}
        if a.nr_pages * 8 > PAGE:  # pages[] itself was vmalloc'ed
            words.add("vpages")
        return vm_line(
            a.addr,
            a.end,
            caller=a.caller,
            pages=a.nr_pages,
            phys=a.phys,
            flags=words,
            numa=a.numa,
        )

    def _line_cost(self, a: VmArea, printed: bool) -> float:
        # show_numa_info() walks pages[] even when the buffer has overflowed
        numa = a.nr_pages * self.numa_page_ns if a.numa or a.has_vm else 0.0
        return (SEQ_LINE_NS if printed else self.visit_ns) + numa

    def vmallocinfo(self, cpu: int):
        """Read /proc/vmallocinfo to the end; returns its lines.

        Per-node era: single_open() + vmalloc_info_show(): every node's
        busy.lock in turn while printing that node's list, then each lazy.lock
        for the "unpurged vm_area" lines; seq_read_iter() re-runs the whole
        show with a doubled buffer until the output fits. Global era: the
        s_start()/s_show()/s_stop() iterator takes vmap_purge_lock and
        vmap_area_lock for each PAGE_SIZE buffer, finding its restart
        position by walking the list from the head.
        """
        t0 = self.env.now
        if self.per_node:
            lines = yield from self._vmallocinfo_nodes(cpu)
        else:
            lines = yield from self._vmallocinfo_global(cpu)
        self.metrics.latency("vmallocinfo", self.env.now - t0)
        return lines

    def _vmallocinfo_nodes(self, cpu: int):
        per_node = []
        for vn in self.nodes:
            busy = sorted(vn.busy.values(), key=lambda a: a.addr)
            per_node.append([(a, self._info_line(a)) for a in busy])
        lazy = [[unpurged_line(a.addr, a.end) for a in vn.lazy] for vn in self.nodes]
        total = sum(len(t) + 1 for node in per_node for _, t in node if t)
        total += sum(len(t) + 1 for node in lazy for t in node)
        bufs = [SEQ_BUF_BYTES]
        while bufs[-1] <= total:
            bufs.append(bufs[-1] << 1)
        for buf in bufs:  # each overflow re-runs the whole show()
            written = 0
            for vn, entries in zip(self.nodes, per_node, strict=True):
                ns = 0.0
                for a, text in entries:
                    fits = bool(text) and written + len(text) + 1 < buf
                    if fits:
                        written += len(text) + 1
                    elif text:
                        written = buf
                    ns += self._line_cost(a, fits)
                yield from vn.busy_lock.hold(cpu, ns)
            for vn, texts in zip(self.nodes, lazy, strict=True):
                if not texts:
                    continue
                ns = 0.0
                for text in texts:
                    fits = written + len(text) + 1 < buf
                    written = written + len(text) + 1 if fits else buf
                    ns += SEQ_LINE_NS if fits else self.visit_ns
                yield from vn.lazy_lock.hold(cpu, ns)
        yield self.env.timeout(int(self._memcpy_ns(total)))  # copy_to_iter()
        out = [t for node in per_node for _, t in node if t]
        out.extend(t for node in lazy for t in node)
        return out

    def _vmallocinfo_global(self, cpu: int):
        busy = self._all_busy()
        texts = [self._info_line(a) for a in busy]
        unpurged = [unpurged_line(s, e) for s, e in self.lazy_tree.blocks()]
        out: list[str] = []
        pos = 0
        n = len(busy)
        while pos < n:
            # s_start(): both locks, then seq_list_start() from the head
            yield from self.purge_lock.take(cpu)
            extra = yield from self.nodes[0].busy_lock.take(cpu)
            ns = pos * self.visit_ns + extra
            used = 0
            while pos < n:
                text = texts[pos]
                if used and used + len(text) + 1 >= SEQ_BUF_BYTES:
                    break
                used += len(text) + 1 if text else 0
                ns += self._line_cost(busy[pos], bool(text))
                if text:
                    out.append(text)
                pos += 1
            yield self.env.timeout(int(ns))
            if pos == n and unpurged:
                # show_purge_info() from the last s_show(), nested
                yield from self.purge_area_lock.hold(cpu, len(unpurged) * SEQ_LINE_NS)
                out.extend(unpurged)
                used += sum(len(t) + 1 for t in unpurged)
            self.nodes[0].busy_lock.release(cpu)
            self.purge_lock.release(cpu)
            yield self.env.timeout(int(self._memcpy_ns(used)))  # copy to user
        return out

    # -- invariants and end of run -------------------------------------------------
    def check(self) -> None:
        """Assert that busy, lazy, pooled and free KVA tile the address space.

        Only meaningful between operations (an allocation in flight is in
        neither tree for a moment, as in the kernel).
        """
        spans: list[tuple[int, int, str]] = []
        for vn in self.nodes:
            spans.extend((a.addr, a.end, "busy") for a in vn.busy.values())
            spans.extend((a.addr, a.end, "lazy") for a in vn.lazy)
            for pool in vn.pools.values():
                spans.extend((a.addr, a.end, "pool") for a in pool)
        if not self.per_node:
            spans.extend((s, e, "lazy") for s, e in self.lazy_tree.blocks())
        spans.extend((s, e, "free") for s, e in self.kva.blocks())
        spans.sort()
        total = 0
        for (s0, e0, k0), (s1, e1, k1) in zip(spans, spans[1:], strict=False):
            if s1 < e0:
                raise AssertionError(
                    f"{k0} {s0:#x}-{e0:#x} overlaps {k1} {s1:#x}-{e1:#x}"
                )
        for s, e, _ in spans:
            total += e - s
        if total != KVA_END - KVA_START:
            raise AssertionError(
                f"KVA accounted {total:#x} != {KVA_END - KVA_START:#x}: leaked or doubled"
            )
        self.kva.check()
        for q in self._vbqs.values():
            for vb in q.xa.values():
                used = bin(vb.used).count("1")
                if used + vb.free + vb.dirty != VMAP_BBMAP_BITS:
                    raise AssertionError(
                        f"vmap_block {vb.va.addr:#x} bitmap out of sync"
                    )
                if self.find_vmap_area(vb.va.addr) is not vb.va:
                    raise AssertionError(f"vmap_block {vb.va.addr:#x} not busy")

    def finish(self) -> None:
        self.metrics.counters["vmap.lazy_pages"] = self.lazy_nr
        self.metrics.counters["vmap.free_blocks"] = len(self.kva)
