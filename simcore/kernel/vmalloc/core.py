"""mm/vmalloc.c: vmalloc() and vfree() proper, and the allocator's state.

Kernel functions modelled: ``__vmalloc_node_range()`` ->
``__get_vm_area_node()`` -> ``alloc_vmap_area()``, then
``__vmalloc_area_node()`` (``vm_area_alloc_pages()`` and
``vmap_pages_range()``), with the 4K fallback of a failed huge attempt;
``vfree()`` -> ``remove_vm_area()`` (``find_unlink_vmap_area()``,
``vunmap_range_noflush()``, ``free_vmap_area_noflush()``),
``vm_reset_perms()`` for ``VM_FLUSH_RESET_PERMS``, ``__free_page()``;
``get_vm_area()`` and ``free_vm_area()``.

:class:`Vmalloc` is composed from the parts of mm/vmalloc.c, one mixin per
file: :mod:`.vmap_area` (KVA and the per-node pools), :mod:`.purge` (lazy
freeing and purge), :mod:`.vmap_block` (vm_map_ram), :mod:`.vread`
(readers) and :mod:`.seed` (a captured /proc/vmallocinfo at time zero).
Its ``__init__`` here sets the state all of them share, and
``check()``/``finish()`` hold the invariants of the whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SHIFT, PMD_SIZE
from simcore.errors import SimulationError
from simcore.hw.locks_fast import processed_event
from simcore.kernel.kva import KvaSpace
from simcore.kernel.page_alloc import BULK_CHUNK, GFP_NORECLAIM, MAX_PAGE_ORDER
from simcore.kernel.vmalloc.area import (
    VM_ALLOC,
    VM_ALLOW_HUGE_VMAP,
    VM_FLUSH_RESET_PERMS,
    VM_MAP,
    VM_NO_GUARD,
    VM_NO_HUGE_VMAP,
    VmArea,
)
from simcore.kernel.vmalloc.purge import PurgeMixin
from simcore.kernel.vmalloc.seed import SeedMixin, VmallocSeed
from simcore.kernel.vmalloc.vmap_area import (
    KVA_END,
    KVA_START,
    MAX_VA_SIZE_PAGES,
    VmapAreaMixin,
    _Node,
)
from simcore.kernel.vmalloc.vmap_block import VMAP_BBMAP_BITS, VmapBlockMixin, _Vbq
from simcore.kernel.vmalloc.vread import COPY_PAGE_FACTOR, PAGE_WALK_LOADS, VreadMixin
from simcore.kernel.vmscan import SHRINK_STOP, Shrinker

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


# The arm64 kernel image's share of the vmalloc range: estimate, a
# distribution kernel's text, rodata, init, data and bss (_end - _text) are
# 40-60 MiB; 64 MiB reserved.
KIMAGE_RESERVE = 64 << 20


class Vmalloc(VmapAreaMixin, PurgeMixin, VmapBlockMixin, VreadMixin, SeedMixin):
    """mm/vmalloc.c of one kernel: the KVA allocator and everything on it."""

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
        self.lag = m.lag  # fast lock model (simcore.hw.locks_fast), else None
        self.done = processed_event(self.env)
        self.page_alloc = kernel.page_alloc
        self.pt = kernel.pagetables
        self.bulk = k.page_alloc != "single"
        self.high_order_first = k.page_alloc == "high_order"
        self.huge_era = k.huge_vmalloc
        # num_online_nodes() divides a request's size before the PMD test
        # until v6.13 (kernel.vmalloc_huge_per_node)
        self.huge_divisor = (
            max(1, len(kernel.page_alloc.buddy.zones)) if k.vmalloc_huge_per_node else 1
        )
        # Whether a caller gets huge mappings without asking: the opt-out
        # semantics of v5.13-v5.17 (powerpc, 121e6f3258fe) and of x86 in
        # v5.18-rc1 (fac54e2bfb5b), where only VM_NO_HUGE_VMAP kept a caller
        # on 4K; 559089e0a93d (v5.18) made it opt-in (VM_ALLOW_HUGE_VMAP),
        # as every preset here is. A strategy modelling the rc1 kernel
        # turns it on (vmalloc_huge_modules*).
        self.huge_by_default = False
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
        # up to v5.10 the lazily freed areas were an unsorted llist, each
        # merged into the free tree on its own at purge (kernel.lazy_purge);
        # lazy_tree still keeps their spans for the bookkeeping
        self.per_area_purge = k.lazy_purge == "list"
        self.lazy_list: list[tuple[int, int]] = []
        self._preload = bytearray(self.nr_cpus)  # ne_fit_preload_node per CPU
        self._vbqs: dict[int, _Vbq] = {}
        self.lazy_nr = 0
        self.used_bytes = 0  # publishes vmap.used_bytes
        self.drain_pending = False
        self.drain_running = False  # the drain work item is executing
        self.helper_wait_ns = 0  # a purge's flush_work() waits for its helpers
        # what the task on each CPU owes the bound kworkers that preempted
        # it (simcore.hw.machine), paid at the end of its next call here
        self.owed_ns = m.owed_ns
        self.seeded: list[VmallocSeed] = []  # captures seeded at time zero
        if self.layout.kimage_vaddr and not k.vmallocinfo:
            self._declare_kernel_vmas()
        if self.per_node:
            # vmap_init_nodes(): the vmap-node shrinker (7679ba6b36db, v6.9)
            kernel.shrinkers.register(
                Shrinker("vmap_node", self._pool_count, self._pool_shrink_scan)
            )

    def _pool_count(self) -> int:
        """vmap_node_shrink_count(): the areas waiting in every node's pools."""
        return sum(len(p) for vn in self.nodes for p in vn.pools.values())

    def _pool_shrink_scan(self, cpu: int, nr_to_scan: int):
        """vmap_node_shrink_scan(): every node's pools decayed whole
        (decay_va_pool_node(vn, true)), then SHRINK_STOP."""
        for vn in self.nodes:
            yield from self._decay_va_pool_node(cpu, vn, True)
        return SHRINK_STOP

    def _declare_kernel_vmas(self) -> None:
        """declare_kernel_vmas() (arch/arm64/mm/mmu.c): the arm64 kernel
        image's segments are busy areas at the start of the vmalloc range,
        added with vm_area_add_early() before vmalloc_init(), so nothing is
        ever allocated over the kernel's text. A captured vmallocinfo brings
        its own."""
        start = self.layout.kimage_vaddr
        self.kva.reserve(start, KIMAGE_RESERVE)
        area = VmArea(
            start, KIMAGE_RESERVE, 0, -1, VM_MAP, "vmalloc", caller="paging_init"
        )
        self._addr_node(start).busy[start] = area
        self.used_bytes += KIMAGE_RESERVE

    @property
    def used_bytes(self) -> int:
        """KVA in busy areas, guard pages included (``vmap.used_bytes``)."""
        return self._used_bytes

    @used_bytes.setter
    def used_bytes(self, value: int) -> None:
        # published where it changes, so timeseries samples are never stale
        self._used_bytes = value
        self.metrics.counters["vmap.used_bytes"] = value

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
            # late 2025: opportunistic orders min(ilog2(remaining), 10)
            # without direct reclaim (large_gfp = gfp & ~__GFP_DIRECT_RECLAIM
            # | __GFP_NOWARN), each success split_page()d; the first failure
            # drops to the bulk path for what is left
            while want - len(pages) >= 2:
                o = min((want - len(pages)).bit_length() - 1, MAX_PAGE_ORDER)
                pfn = yield from pa.alloc_pages(cpu, o, zero=zero, gfp=GFP_NORECLAIM)
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

    # -- vmalloc -----------------------------------------------------------------
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
        size (per online node until v6.13: ``kernel.vmalloc_huge_per_node``),
        the area is PMD-aligned and sized and backed by order-9 pages
        mapped with 2M leaves; when those run out the whole attempt is
        undone and retried with 4K pages (``vmalloc.huge_fallbacks``).
        ``zero`` is vzalloc()'s __GFP_ZERO. Tracepoint ``vmalloc``.
        """
        traced = self.hooks.on  # the tracepoint, inline: see simcore.hooks
        if traced:
            args = (size,)
            kw = dict(range_=range_, align=align, flags=flags, caller=caller, zero=zero)
            self.hooks.enter("vmalloc", cpu, args, kw)
        t0 = self.env.now
        shift = PAGE_SHIFT
        # HAVE_ARCH_HUGE_VMALLOC of the era (kernel.huge_vmalloc)
        huge = (
            self.huge_era
            and (flags & VM_ALLOW_HUGE_VMAP or self.huge_by_default)
            and not flags & VM_NO_HUGE_VMAP
        )
        if huge and self.huge_fits(size):
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
        # kworker time owed on this CPU, and the fast lock model's time
        # ahead, paid in one timeout
        ahead = self.owed_ns(cpu)
        lag = self.lag
        if lag is not None and lag[cpu]:
            ahead += lag[cpu]
            lag[cpu] = 0
        if ahead:
            yield self.env.timeout(ahead)
        if area is not None:
            self.metrics.latency("vmalloc", self.env.now - t0)
        if traced:
            self.hooks.exit("vmalloc", cpu, args, kw, area)
        return area

    def huge_fits(self, size: int) -> bool:
        """__vmalloc_node_range()'s test for a PMD mapping of a NUMA_NO_NODE
        request: ``size / num_online_nodes()`` (size_per_node) reaches a
        PMD, or the whole size from v6.13 (``kernel.vmalloc_huge_per_node``)."""
        return size // self.huge_divisor >= PMD_SIZE

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
        fast = self.lag is not None
        area = yield from self._alloc_vmap_area(
            cpu, va_size, align, range_, pre_ns=2 * self.slab_ns, fast=fast
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
                cpu, area.addr, area.pages, page_shift=shift, pre_ns=ns, fast=fast
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
        mapped, frees the KVA lazily), then kfree() of the vm_struct; the
        owner frees its own pages."""
        va = yield from self._find_unlink(cpu, area.addr)
        if va is None:
            raise SimulationError(f"free_vm_area of unknown area {area.addr:#x}")
        ns = self.pt.vunmap_ns(area.addr, area.size - PAGE)
        yield from self._free_vmap_area_noflush(cpu, va)
        # kfree() of the vm_struct, with the unmapping's lock-free time
        yield self.env.timeout(int(ns + self.slab_ns))

    # -- vfree -------------------------------------------------------------------
    def vfree(self, cpu: int, area: VmArea):
        """vfree(): remove_vm_area() (unlink, clear PTEs, lazily free the
        KVA), vm_reset_perms() for VM_FLUSH_RESET_PERMS, __free_page() of
        each page, kvfree() of the page array and kfree() of the vm_struct.
        Tracepoint ``vfree``."""
        traced = self.hooks.on  # the tracepoint, inline: see simcore.hooks
        if traced:
            self.hooks.enter("vfree", cpu, (area,), {})
        t0 = self.env.now
        fast = self.lag is not None
        va = yield from self._find_unlink(cpu, area.addr, fast)
        if va is None:
            raise SimulationError(f"vfree of unknown area {area.addr:#x}")
        # vunmap_range_noflush(): clear the PTEs only (lock-free, so its time
        # is spent together with the page frees at the end: one event less)
        ns = self.pt.vunmap_ns(area.addr, area.nr_pages * PAGE)
        yield from self._free_vmap_area_noflush(cpu, va, fast)
        if area.flags & VM_FLUSH_RESET_PERMS and area.pages:
            yield from self.vm_reset_perms(cpu, area)
        # kvfree(vm->pages) where __vmalloc_area_node() allocated the array,
        # then kfree(vm): SLUB fast-path frees, priced as the allocations.
        # An array of more than a page (over 512 pages mapped) is itself
        # vmalloc()'d by the kernel; here both ends of it cost a slab call
        ns += self.slab_ns * (2 if area.flags & VM_ALLOC else 1)
        ns += yield from self.free_pages(cpu, area)
        # kworker time owed on this CPU (a drain this vfree() queued, once
        # it has run)
        ns += self.owed_ns(cpu)
        lag = self.lag
        if lag is not None:
            # the fast lock model's time ahead goes with the last timeout
            ahead, lag[cpu] = lag[cpu], 0
            yield self.env.timeout(int(ns) + ahead)
        else:
            yield self.env.timeout(int(ns))
        self.metrics.latency("vfree", self.env.now - t0)
        if traced:
            self.hooks.exit("vfree", cpu, (area,), {}, None)

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
