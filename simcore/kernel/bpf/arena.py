"""kernel/bpf/arena.c: BPF_MAP_TYPE_ARENA, sparse memory shared by BPF
programs (kernel view) and one user process (user view).

Kernel functions modelled, step by step with their locks:

- ``arena_map_alloc()``: ``get_vm_area(KERN_VM_SZ, VM_SPARSE | VM_USERMAP)``
  (4 GiB + 64 KiB of KVA whatever the arena's size), ``range_tree_set(0,
  max_entries)``; from Dec 2025 ``populate_pgtable_except_pte()`` (every
  page-table level of the 4 GiB + 32 KiB window allocated at once, about a
  million callback visits) and, in the scratch-page era, the scratch page;
- ``arena_get_unmapped_area()`` + ``arena_map_mmap()``: one user VMA that
  never crosses a 4 GiB boundary (``get_unmapped_area(len * 2)``, rounded
  up to 4 GiB when it would), remembered under ``arena->lock``;
- ``arena_alloc_pages()`` (``bpf_arena_alloc_pages``): the page array, the
  lock, ``range_tree_find`` + ``range_tree_clear`` (or
  ``is_range_tree_set`` + clear at a fixed address), then in batches of at
  most 1024 pages ``bpf_map_alloc_pages()`` (one zeroed ``alloc_pages()``
  per page) and the kernel-view PTEs (``vm_area_map_pages()`` /
  ``apply_to_page_range()``, one PTE per page, no flush);
- ``arena_vm_fault()`` with the core fault around it: ``vmalloc_to_page()``
  under the lock; a page already there is mapped into the user view, an
  absent one is allocated (one range-tree slot, one page, one kernel PTE)
  unless ``BPF_F_SEGV_ON_FAULT``;
- ``arena_free_pages()`` (``bpf_arena_free_pages``): ``range_tree_set``,
  kernel PTEs cleared, ``flush_tlb_kernel_range()`` to all CPUs, user pages
  zapped (``zap_pages()``: their own flush to the CPUs of the mm), pages
  freed. Mutex era: all under the mutex, one flush per page
  (``vm_area_unmap_pages()`` -> ``vunmap_range()``). Spinlock era: PTEs
  cleared under the lock, one flush for the whole range after it; from a
  non-sleepable program (or when the lock fails) the span is queued
  (``kmalloc_nolock``, ``llist_add``, ``irq_work_queue``) and
  ``arena_free_worker()`` does all queued spans in one lock hold, then per
  span a flush and a zap, then frees the pages;
- ``arena_map_free()``: pending deferred frees are waited for,
  ``apply_to_existing_page_range()`` frees every present page *without* a
  flush (the kernel relies on nothing touching the range any more), then
  ``free_vm_area()`` (lazy KVA free: 1 M pages of ``vmap_lazy_nr``, so a
  purge with a full flush follows);
- BPF accesses to an unallocated page: ``ex_handler_bpf()`` fix-up on every
  access (``kernel.arena_fault: fixup``), or in the 2026 tree
  ``bpf_arena_handle_page_fault()``, which maps the per-arena scratch page
  with ``ptep_try_set()`` (no flush) and reports to the program's stderr
  stream once per page (``scratch_page``); allocating over a scratch PTE
  clears it and flushes that page first (break-before-make).

Eras (``kernel.arena_locking``): ``mutex`` is one ``arena->lock`` mutex over
everything (v6.9 to Nov 2025; range tree from v6.13, the maple tree of v6.9
costed the same); ``spinlock`` (Dec 2025 bpf-next,
20251222190815.4112944-1-puranjay@kernel.org) takes an rqspinlock with IRQs
off over the range tree and the kernel PTEs (``arena_spinlock``; its
holders' and spinners' time is charged as ``irq_off`` CPU time) and the
mutex only for the VMA list. rqspinlock timeouts (0.25 s) and deadlock
detection never fire at modelled hold times and are not modelled.

What a strategy (``kernel.arena_ops``) decides: how freshly allocated
pages are backed and mapped, which page size the kernel view uses for an
access, and how freed spans are flushed and given back
(:mod:`simcore.strategies.arena_base`).

Memory of the model follows populated pages: dicts keyed by page offset for
the mapped pages and user PTEs, one entry per free range in the range tree;
nothing is kept per page of untouched space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simcore.constants import PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT, SZ_4G
from simcore.errors import SimulationError
from simcore.kernel.bpf.range_tree import ENOENT, RangeTree
from simcore.kernel.pgtable import PAGE_SIZE as PAGE
from simcore.kernel.vmalloc import VM_SPARSE, VM_USERMAP

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# reach of the s16 ``off`` of LDX/STX, rounded up to two pages
GUARD_SZ = 1 << 16
KERN_VM_SZ = SZ_4G + GUARD_SZ
# KMALLOC_MAX_CACHE_SIZE (two pages) / sizeof(struct page *): the page-array
# cap of the Dec 2025 tree, which allocates and maps in batches of this size
ARENA_BATCH = 2 * PAGE // 8
LO32 = (1 << 32) - 1

# A BPF load/store at an unallocated arena page: #PF entry, exception table
# search, ex_handler_bpf(), return. Estimate: 1-2 us (arena.md section 6).
KERNEL_FAULT_NS = 1500
# bpf_stream_printk() of one "ERROR: Arena ... access" line plus
# bpf_stream_dump_stack() of a few frames. Estimate: a few microseconds of
# formatting and stack unwinding.
STREAM_REPORT_NS = 3000
# A user minor fault without the arena's own work: exception entry,
# handle_mm_fault() to vm_ops->fault, finish_fault() and return. Estimate:
# under the 661 ns Haswell MADV_DONTNEED + refault of one page
# (20190525082203.6531-1-namit@vmware.com, hardware.md section 4), which
# also pays the madvise call.
USER_FAULT_NS = 450
# zap_page_range_single() around the PTE clears: mmu_gather setup, the walk
# down to the range, tlb_finish_mmu(). Estimate: a few hundred ns.
ZAP_NS = 300
# Top of the mmap area, where get_unmapped_area() hands out top-down.
# Estimate: x86-64 TASK_SIZE is 0x7ffffffff000; mmap_base sits below the
# stack gap and randomisation, about here.
MMAP_BASE = 0x7F00_0000_0000


class UserMm:
    """The user process that mmap()s arenas: the CPUs it runs on (its
    ``mm_cpumask``, which user-range flushes target) and a top-down
    ``get_unmapped_area()``."""

    def __init__(self, cpus) -> None:
        self.cpus = tuple(sorted(set(cpus)))
        self.top = MMAP_BASE

    def get_unmapped_area(self, length: int, align: int = PAGE) -> int:
        addr = (self.top - length) & ~(align - 1)
        self.top = addr
        return addr


@dataclass(slots=True)
class FreedSpan:
    """What one free took out of the kernel view, to be flushed and freed."""

    pgoff: int
    n: int
    pfns: list[int] = field(default_factory=list)  # order-0 pages to free
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (pfn, order)
    kranges: list[tuple[int, int]] = field(default_factory=list)  # to flush
    zap_always: bool = False  # the worker zaps every span
    user_cleared: list[int] = field(default_factory=list)  # pgoffs zapped

    @property
    def pages(self) -> int:
        """Pages the span holds until given back."""
        return len(self.pfns) + sum(1 << order for _, order in self.blocks)


def pages_in(spans, pgoff: int, n: int) -> int:
    """Pages of [pgoff, pgoff + n) inside the (start, count) spans."""
    end = pgoff + n
    return sum(max(0, min(end, p + k) - max(pgoff, p)) for p, k in spans)


def keys_in(keys, lo: int, hi: int) -> list[int]:
    """Keys of a dict or set in [lo, hi), by the cheaper of the two walks."""
    if hi - lo <= len(keys):
        return [p for p in range(lo, hi) if p in keys]
    return sorted(p for p in keys if lo <= p < hi)


class BpfArena:
    """One arena: its kernel window, range tree, mapped pages and user VMA.

    Build one with :meth:`create` (a generator: ``arena_map_alloc()``).
    """

    def __init__(self, kernel: Kernel, max_entries: int, segv_on_fault: bool):
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.pt = kernel.pagetables
        self.pa = kernel.page_alloc
        self.strategy = kernel.arena_ops
        k = kernel.knobs
        self.spin_era = k.arena_locking == "spinlock"
        self.scratch_era = k.arena_fault == "scratch_page"
        c = kernel.profile.kernel_costs
        self.visit_ns = c.rb_node_visit_ns.value
        self.slab_ns = c.slab_alloc_ns.value
        self.pte_ns = c.pte_write_ns.value
        self.zero_ns = c.page_zero_ns.value
        self.walk_ns = kernel.vmalloc.walk_ns  # vmalloc_to_page(): 4 loads
        self.irq_ns = kernel.profile.flush.irq_entry_exit_ns.value
        self.wakeup_ns = kernel.profile.locks.mutex_wakeup_ns.value
        m = kernel.machine
        # arena->lock: everything in the mutex era, the VMA list later
        self.mutex = m.mutex("arena_lock")
        self.spin = m.spinlock("arena_spinlock") if self.spin_era else None
        self.max_entries = max_entries
        self.segv_on_fault = segv_on_fault
        self.kern_vm = None
        self.kern_vm_start = 0
        self.user_vm_start = 0
        self.user_vm_end = 0
        self.mm: UserMm | None = None
        self.rt = RangeTree()
        self.pfn: dict[int, int] = {}  # pgoff -> pfn, 4K kernel PTEs
        self.scratch: set[int] = set()  # pgoffs mapped to the scratch page
        self.scratch_pfn: int | None = None
        self.user: dict[int, int] = {}  # pgoff -> pfn, user PTEs
        self.in_use = 0  # pages handed to the program or user, not freed
        self.held = 0  # pages this arena holds from the buddy allocator
        self.free_spans: list[tuple[int, int]] = []  # deferred (pgoff, n)
        self._irq_queued = False  # irq_work pending: queueing more is a no-op
        self._workers: set = set()  # irq_work -> worker processes running
        self.dead = False
        self.priv = self.strategy.init_arena(self)

    # -- addresses -------------------------------------------------------------
    def kaddr(self, pgoff: int) -> int:
        """kern_vm_start + (u32)uaddr: where BPF programs see the page."""
        return self.kern_vm_start + (self.user_vm_start & LO32) + (pgoff << PAGE_SHIFT)

    def uaddr(self, pgoff: int) -> int:
        return self.user_vm_start + (pgoff << PAGE_SHIFT)

    def compute_pgoff(self, uaddr: int) -> int:
        return ((uaddr - (self.user_vm_start & LO32)) & LO32) >> PAGE_SHIFT

    @property
    def nr_pages(self) -> int:
        """Pages the user VMA covers (0 before mmap)."""
        return (self.user_vm_end - self.user_vm_start) >> PAGE_SHIFT

    # -- locking ---------------------------------------------------------------
    def lock(self, cpu: int):
        """The lock over the range tree and kernel PTEs; returns (t0, ns
        still owed for an uncontended acquisition)."""
        t0 = self.env.now
        lk = self.spin if self.spin_era else self.mutex
        extra = yield from lk.take(cpu)
        return t0, extra

    def unlock(self, cpu: int, t0: int) -> None:
        if not self.spin_era:
            self.mutex.release(cpu)
            return
        self.spin.release(cpu)
        # raw_res_spin_lock_irqsave(): IRQs are off from before the spin to
        # the unlock, on the CPU that held (or waited for) the lock
        off = self.env.now - t0
        m = self.metrics
        m.cpu_time("irq_off", off)
        c = m.counters
        c["arena.irqoff_ns"] += off
        if off > c["arena.irqoff_max_ns"]:
            c["arena.irqoff_max_ns"] = off

    def _tree_ns(self) -> float:
        """Charge the range-tree work done since the last call."""
        visits, nodes = self.rt.take_cost()
        return visits * self.visit_ns + nodes * self.slab_ns

    # -- accounting --------------------------------------------------------------
    def _hold(self, pages: int) -> None:
        """Pages taken from (+) or given back to (-) the buddy allocator."""
        self.held += pages
        c = self.metrics.counters
        c["mem.arena.backed_bytes"] += pages * PAGE
        if c["mem.arena.backed_bytes"] > c["mem.arena.peak_backed_bytes"]:
            c["mem.arena.peak_backed_bytes"] = c["mem.arena.backed_bytes"]
        self._waste()

    def _use(self, pages: int) -> None:
        self.in_use += pages
        self.metrics.counters["mem.arena.allocated_bytes"] += pages * PAGE
        self._waste()

    def _waste(self) -> None:
        c = self.metrics.counters
        c["mem.arena.waste_bytes"] = (
            c["mem.arena.backed_bytes"] - c["mem.arena.allocated_bytes"]
        )

    # -- arena_map_alloc -----------------------------------------------------------
    @classmethod
    def create(
        cls,
        kernel: Kernel,
        cpu: int,
        max_entries: int,
        *,
        segv_on_fault: bool = False,
    ):
        """arena_map_alloc(): returns the arena, or None (-ENOMEM)."""
        if not 0 < max_entries <= SZ_4G >> PAGE_SHIFT:
            raise SimulationError(f"arena of {max_entries} pages: -E2BIG")
        a = cls(kernel, max_entries, segv_on_fault)
        t_start = a.env.now
        st = a.strategy
        # a strategy wanting 2 MiB-aligned views reserves room to align in
        extra = st.kva_align if st.kva_align > PAGE else 0
        area = yield from kernel.vmalloc.get_vm_area(
            cpu, KERN_VM_SZ + extra, flags=VM_SPARSE | VM_USERMAP
        )
        if area is None:
            kernel.metrics.inc("arena.create_failures")
            return None
        a.kern_vm = area
        start = area.addr + GUARD_SZ // 2
        a.kern_vm_start = -(-start // st.kva_align) * st.kva_align
        work = a.slab_ns  # bpf_map_area_alloc() of struct bpf_arena
        if a.scratch_era:
            pfn = yield from a.pa.alloc_pages(cpu, 0, zero=True)
            if pfn is None:
                yield from kernel.vmalloc.free_vm_area(cpu, area)
                kernel.metrics.inc("arena.create_failures")
                return None
            a.scratch_pfn = pfn
            a._hold(1)
        c = kernel.metrics.counters
        c["mem.arena.kva_bytes"] += area.size
        c["arena.arenas"] += 1
        a.rt.set(0, max_entries)
        work += a._tree_ns()
        yield a.env.timeout(int(work))
        if a.spin_era:
            ok = yield from a._populate_pgtable_except_pte(cpu)
            if not ok:
                yield from a.destroy(cpu)
                kernel.metrics.inc("arena.create_failures")
                return None
        kernel.metrics.latency("arena_map_alloc", a.env.now - t_start)
        return a

    def _populate_pgtable_except_pte(self, cpu: int):
        """populate_pgtable_except_pte(): apply_to_page_range() with no data
        over the window: every missing PMD table, and (unless the strategy
        maps 2 MiB leaves) every PTE table, then a callback visit per PTE
        slot. Tables are installed as __pmd_alloc()/__pte_alloc_kernel() do,
        under init_mm.page_table_lock."""
        pt = self.pt
        vm = pt.vmap
        start = self.kern_vm_start
        end = start + SZ_4G + GUARD_SZ // 2
        for gb in range(start >> PUD_SHIFT, ((end - 1) >> PUD_SHIFT) + 1):
            if not (yield from pt.pmd_alloc(cpu, gb << PUD_SHIFT)):
                return False
        if self.strategy.prepopulate_ptes:
            for idx in range(start >> PMD_SHIFT, ((end - 1) >> PMD_SHIFT) + 1):
                if idx in vm.ptes or idx in vm.huge:
                    continue
                if not (yield from pt.pte_alloc_kernel(cpu, idx << PMD_SHIFT)):
                    return False
            # the callback runs once per PTE slot, costed like a PTE store
            yield self.env.timeout(int(((end - start) >> PAGE_SHIFT) * self.pte_ns))
        return True

    # -- mmap ----------------------------------------------------------------------
    def mmap(self, cpu: int, mm: UserMm):
        """arena_get_unmapped_area() + arena_map_mmap(): the one user VMA,
        as long as the arena, not crossing a 4 GiB boundary."""
        length = self.max_entries << PAGE_SHIFT
        align = self.strategy.user_align
        ret = mm.get_unmapped_area(length * 2 + (align if align > PAGE else 0), align)
        if (ret >> 32) != ((ret + length - 1) >> 32):
            ret = -(-ret // SZ_4G) * SZ_4G
        if (ret >> 32) != ((ret + length - 1) >> 32):
            raise SimulationError(f"arena VMA at {ret:#x} crosses 4 GiB")
        # remember_vma(): one kmalloc under arena->lock
        yield from self.mutex.hold(cpu, self.slab_ns)
        self.mm = mm
        self.user_vm_start = ret
        self.user_vm_end = ret + length
        return True

    # -- pages in, pages out (strategies call these) --------------------------------
    def alloc_backing(self, cpu: int, n: int):
        """bpf_map_alloc_pages(): n zeroed order-0 pages, one alloc_pages()
        each; on failure the ones obtained go back and None is returned."""
        got: list[int] = []
        for _ in range(n):
            pfn = yield from self.pa.alloc_pages(cpu, 0, zero=True)
            if pfn is None:
                if got:
                    yield from self.pa.free_pages_batch(cpu, got)
                return None
            got.append(pfn)
        self._hold(n)
        return got

    def map_4k(self, cpu: int, pgoff: int, pfns: list[int]):
        """Kernel-view PTEs for pfns at pgoff: vm_area_map_pages() (mutex
        era, may allocate page tables) or apply_to_page_range() over
        pre-populated tables; one PTE store per page, no flush."""
        work = 0
        if self.scratch:
            # apply_range_set_cb(): a scratch PTE is cleared and flushed
            # before the real page goes in (break-before-make)
            for p in keys_in(self.scratch, pgoff, pgoff + len(pfns)):
                ka = self.kaddr(p)
                yield from self.pt.vunmap_range_noflush(cpu, ka, PAGE)
                work += self.flush_kernel(cpu, ka, ka + PAGE)
                self.scratch.discard(p)
                self.metrics.inc("arena.scratch_replaced")
        if work:
            yield self.env.timeout(work)
        ok = yield from self.pt.vmap_pages_range(cpu, self.kaddr(pgoff), pfns)
        if ok:
            for i, pfn in enumerate(pfns):
                self.pfn[pgoff + i] = pfn
        return ok

    def populate_4k(self, cpu: int, pgoff: int, n: int):
        """The allocation loop of arena_alloc_pages() with 4K pages: in
        batches of at most ARENA_BATCH, allocate then map. Returns the
        number of pages mapped."""
        done = 0
        while done < n:
            batch = min(n - done, ARENA_BATCH)
            pfns = yield from self.alloc_backing(cpu, batch)
            if pfns is None:
                break
            ok = yield from self.map_4k(cpu, pgoff + done, pfns)
            if not ok:
                yield from self.pa.free_pages_batch(cpu, pfns)
                self._hold(-len(pfns))
                break
            done += batch
        return done

    def unmap_4k(self, cpu: int, pgoff: int, n: int, per_page: bool) -> FreedSpan:
        """Clear the kernel PTEs of [pgoff, pgoff + n) and collect the pages
        (no time: the caller charges :meth:`unmap_ns`). ``per_page`` (mutex
        era): one flush per page that was mapped; otherwise one flush over
        the whole range, mapped or not."""
        span = FreedSpan(pgoff, n)
        for p in keys_in(self.pfn, pgoff, pgoff + n):
            span.pfns.append(self.pfn.pop(p))
            if per_page:
                ka = self.kaddr(p)
                span.kranges.append((ka, ka + PAGE))
        # apply_range_clear_cb() clears scratch PTEs too, without freeing
        for p in keys_in(self.scratch, pgoff, pgoff + n):
            self.scratch.discard(p)
        self.pt.vmap.clear(self.kaddr(pgoff), n << PAGE_SHIFT)
        if not per_page:
            ka = self.kaddr(pgoff)
            span.kranges.append((ka, ka + (n << PAGE_SHIFT)))
        return span

    def unmap_ns(self, n: int, per_page: bool) -> float:
        """PTE-clearing cost of a free of n pages: a vmalloc_to_page() and
        a PTE clear per page (mutex era) or one callback per PTE slot of the
        range (apply_to_existing_page_range())."""
        return n * (self.pte_ns + (self.walk_ns if per_page else 0))

    def flush_kernel(self, cpu: int, start: int, end: int) -> int:
        """flush_tlb_kernel_range() to every CPU; returns the ns it takes."""
        self.metrics.inc("arena.kernel_flushes")
        self._per_free()
        return self.kernel.machine.flush.kernel_range(cpu, start, end)

    def _per_free(self) -> None:
        c = self.metrics.counters
        if c["arena.frees"]:
            c["arena.kernel_flushes_per_free"] = round(
                c["arena.kernel_flushes"] / c["arena.frees"], 6
            )

    def zap(self, cpu: int, span: FreedSpan, locked: bool, flush: bool = True):
        """zap_pages() (or, for one page not user-mapped, nothing): clear
        the user PTEs of the span in the VMA and, when any was present,
        flush them on the mm's CPUs (``flush=False`` leaves that to the
        caller). Takes arena->lock for the VMA list unless held."""
        pgoff, n = span.pgoff, span.n
        if n == 1 and not span.zap_always and pgoff not in self.user:
            return
        if not locked:
            extra = yield from self.mutex.take(cpu)
        else:
            extra = 0
        cleared = keys_in(self.user, pgoff, pgoff + n) if self.mm else []
        for p in cleared:
            del self.user[p]
        span.user_cleared = cleared
        ns = ZAP_NS + len(cleared) * self.pte_ns + extra
        if cleared and flush:
            ns += self.flush_user(cpu, cleared[0], cleared[-1] + 1)
        yield self.env.timeout(int(ns))
        if not locked:
            self.mutex.release(cpu)

    def flush_user(self, cpu: int, first: int, end: int) -> int:
        """tlb_finish_mmu() after a zap of pgoffs [first, end)."""
        self.metrics.inc("arena.user_flushes")
        return self.kernel.machine.flush.user_range(
            cpu, self.uaddr(first), self.uaddr(end), self.mm.cpus
        )

    def give_back(self, cpu: int, spans: list[FreedSpan]):
        """__free_page() of every page the spans collected."""
        pfns = [p for s in spans for p in s.pfns]
        if pfns:
            yield from self.pa.free_pages_batch(cpu, pfns)
        pages = len(pfns)
        for s in spans:
            for pfn, order in s.blocks:
                yield from self.pa.free_pages(cpu, pfn, order)
                pages += 1 << order
            s.pfns = []
            s.blocks = []
        if pages:
            self._hold(-pages)

    # -- bpf_arena_alloc_pages -----------------------------------------------------------
    def alloc_pages(self, cpu: int, uaddr: int, n: int):
        """arena_alloc_pages(): the user address of n fresh zeroed pages
        (at ``uaddr`` when non-zero), or 0."""
        t_start = self.env.now
        m = self.metrics
        page_cnt_max = self.nr_pages
        if n <= 0 or n > page_cnt_max:
            m.inc("arena.alloc_failures")
            return 0
        pgoff = 0
        if uaddr:
            if uaddr & (PAGE - 1):
                m.inc("arena.alloc_failures")
                return 0
            pgoff = self.compute_pgoff(uaddr)
            if pgoff > page_cnt_max - n:
                m.inc("arena.alloc_failures")
                return 0
        # kvcalloc() (mutex era) / kmalloc_nolock() (capped) of the array
        yield self.env.timeout(int(self.slab_ns))
        t0, work = yield from self.lock(cpu)
        if uaddr:
            ok = self.rt.is_set(pgoff, n)
            if ok:
                self.rt.clear(pgoff, n)
        else:
            pgoff = self.rt.find(n)
            ok = pgoff != ENOENT
            if ok:
                self.rt.clear(pgoff, n)
        work += self._tree_ns()
        yield self.env.timeout(int(work))
        if not ok:
            self.unlock(cpu, t0)
            m.inc("arena.alloc_failures")
            return 0
        mapped = yield from self.strategy.populate(cpu, self, pgoff, n)
        if mapped < n:
            # out: range_tree_set() of what was not mapped, free the rest
            self.rt.set(pgoff + mapped, n - mapped)
            yield self.env.timeout(int(self._tree_ns()))
            self.unlock(cpu, t0)
            if mapped:
                self._use(mapped)
                yield from self.free_pages(cpu, self.uaddr(pgoff), mapped)
            m.inc("arena.alloc_failures")
            return 0
        self.unlock(cpu, t0)
        self._use(n)
        m.inc("arena.allocs")
        m.inc("arena.alloc_pages", n)
        m.latency("arena_alloc", self.env.now - t_start)
        return self.uaddr(pgoff)

    # -- arena_vm_fault --------------------------------------------------------------------
    def user_fault(self, cpu: int, pgoff: int):
        """A user access to an unmapped page of the VMA: the fault, then
        arena_vm_fault(), then the user PTE. Returns the pfn, or None for
        SIGSEGV."""
        t_start = self.env.now
        m = self.metrics
        yield self.env.timeout(USER_FAULT_NS)
        t0, extra = yield from self.lock(cpu)
        yield self.env.timeout(int(self.walk_ns + extra))  # vmalloc_to_page()
        st = self.strategy
        pfn = st.backing_pfn(self, pgoff)
        if pgoff in self.scratch or (pfn is None and self.segv_on_fault):
            self.unlock(cpu, t0)
            m.inc("arena.user_sigsegv")
            return None
        if pfn is not None:
            if self.rt.free_in(pgoff, 1):
                # backed but free (a strategy backing more than asked for)
                yield from st.claim(cpu, self, pgoff)
                self._use(1)
        else:
            self.rt.clear(pgoff, 1)
            yield self.env.timeout(int(self._tree_ns()))
            got = yield from st.populate(cpu, self, pgoff, 1)
            if not got:
                self.rt.set(pgoff, 1)
                yield self.env.timeout(int(self._tree_ns()))
                self.unlock(cpu, t0)
                m.inc("arena.user_sigsegv")
                return None
            self._use(1)
            m.inc("arena.user_fault_allocs")
            pfn = st.backing_pfn(self, pgoff)
        # finish_fault() installs the user PTE just after the unlock, and a
        # page reference keeps a page freed in between alive until it is
        # unmapped; the model installs it before the unlock instead, so a
        # free never races a fault into mapping a freed page
        self.user[pgoff] = pfn
        self.unlock(cpu, t0)
        yield self.env.timeout(int(self.pte_ns))
        m.inc("arena.user_faults")
        m.latency("arena_fault", self.env.now - t_start)
        return pfn

    # -- BPF access to an unallocated page ---------------------------------------------------
    def kernel_fault(self, cpu: int, pgoff: int):
        """A BPF load or store at an unmapped page of the window. Returns
        True when the page is mapped afterwards (the scratch page)."""
        m = self.metrics
        ka = self.kaddr(pgoff)
        # the installer needs the PTE table (pre-populated in its era) and
        # a free slot the range tree does not hand out meanwhile
        if (
            self.scratch_era
            and self.pt.vmap.has_pte_table(ka)
            and self.rt.free_in(pgoff, 1)
        ):
            # lockless: ptep_try_set() races allocations by cmpxchg, and
            # the range tree is only read here to keep the model's PTEs apart
            yield self.env.timeout(KERNEL_FAULT_NS + STREAM_REPORT_NS)
            if self.pt.lookup(ka) is None and pgoff not in self.pfn:
                yield from self.pt.vmap_pages_range(cpu, ka, [self.scratch_pfn])
                self.scratch.add(pgoff)
                m.inc("arena.scratch_installs")
            m.cpu_time("kfault", KERNEL_FAULT_NS + STREAM_REPORT_NS)
            return True
        # ex_handler_bpf(): the load reads 0, the store is dropped
        yield self.env.timeout(KERNEL_FAULT_NS)
        m.inc("arena.kernel_faults")
        m.cpu_time("kfault", KERNEL_FAULT_NS)
        return False

    # -- bpf_arena_free_pages ----------------------------------------------------------------
    def free_pages(self, cpu: int, uaddr: int, n: int, sleepable: bool = True):
        """arena_free_pages(): from a sleepable program, or (spinlock era)
        a non-sleepable one, whose span is deferred to the worker."""
        t_start = self.env.now
        m = self.metrics
        uaddr = uaddr & LO32 & ~(PAGE - 1)
        full = (self.user_vm_start & ~LO32) + uaddr
        end = min(self.user_vm_end, full + (n << PAGE_SHIFT))
        if full >= end:
            return
        n = (end - full) >> PAGE_SHIFT
        pgoff = self.compute_pgoff(uaddr)
        m.inc("arena.frees")
        st = self.strategy
        used = n - self.rt.free_in(pgoff, n) - self._queued_in(pgoff, n)
        self._use(-used)
        m.inc("arena.freed_pages", used)
        if not sleepable:
            if not self.spin_era:
                raise SimulationError(
                    "bpf_arena_free_pages from a non-sleepable program needs "
                    "kernel.arena_locking: spinlock"
                )
            yield from self._defer(cpu, pgoff, n)
            return
        t0, extra = yield from self.lock(cpu)
        if not st.defer_range_free:
            self.rt.set(pgoff, n)
        per_page = not self.spin_era
        span = st.unmap(cpu, self, pgoff, n, per_page)
        work = extra + self._tree_ns() + self.unmap_ns(n, per_page)
        yield self.env.timeout(int(work))
        if self.spin_era:
            # the flush, the zap and the frees run after the unlock
            self.unlock(cpu, t0)
            yield from st.retire(cpu, self, [span], locked=False)
        else:
            yield from st.retire(cpu, self, [span], locked=True)
            self.unlock(cpu, t0)
        self._per_free()
        m.latency("arena_free", self.env.now - t_start)

    def _queued_in(self, pgoff: int, n: int) -> int:
        """Pages of [pgoff, pgoff + n) already freed by the program but not
        yet marked free (deferred spans, a strategy's pending ones)."""
        queued = pages_in(self.free_spans, pgoff, n)
        return queued + self.strategy.pending_in(self, pgoff, n)

    def _defer(self, cpu: int, pgoff: int, n: int):
        """The defer: label: kmalloc_nolock() a span, llist_add(),
        irq_work_queue() (a no-op while one is pending)."""
        yield self.env.timeout(int(self.slab_ns))
        self.free_spans.append((pgoff, n))
        self.metrics.inc("arena.deferred_frees")
        if not self._irq_queued:
            self._irq_queued = True
            proc = self.env.process(self._free_irq(cpu))
            self._workers.add(proc)
            proc.callbacks.append(lambda _ev, p=proc: self._workers.discard(p))

    def deferred_done(self):
        """An event for the end of the deferred frees under way, or None."""
        return self.env.all_of(list(self._workers)) if self._workers else None

    def _free_irq(self, cpu: int):
        """arena_free_irq() at the next interrupt, schedule_work(), then
        arena_free_worker() on a kworker of the same CPU."""
        yield self.env.timeout(int(self.irq_ns + self.wakeup_ns))
        self._irq_queued = False
        t0, extra = yield from self.lock(cpu)
        queued, self.free_spans = self.free_spans, []
        st = self.strategy
        spans = []
        work = extra
        for pgoff, n in queued:
            span = st.unmap(cpu, self, pgoff, n, False)
            span.zap_always = True
            if not st.defer_range_free:
                self.rt.set(pgoff, n)
            spans.append(span)
            work += self.unmap_ns(n, False)
        work += self._tree_ns()
        yield self.env.timeout(int(work))
        self.unlock(cpu, t0)
        self.metrics.inc("arena.free_worker_runs")
        yield from st.retire(cpu, self, spans, locked=False)
        self._per_free()

    # -- teardown ---------------------------------------------------------------------------------
    def munmap(self, cpu: int):
        """munmap() of the VMA: every user PTE zapped (one mm flush), then
        arena_vm_close() takes it off the list under arena->lock."""
        if self.mm is None:
            return
        ns = len(self.user) * self.pte_ns
        if self.user:
            lo, hi = min(self.user), max(self.user) + 1
            ns += self.flush_user(cpu, lo, hi)
            self.user.clear()
        yield self.env.timeout(int(ns))
        yield from self.mutex.hold(cpu, self.slab_ns)

    def destroy(self, cpu: int):
        """arena_map_free() (after munmap): wait for deferred frees, free
        every present page without a flush, release the KVA lazily."""
        t_start = self.env.now
        yield from self.munmap(cpu)
        while (ev := self.deferred_done()) is not None:
            yield ev  # irq_work_sync() + flush_work()
        yield from self.strategy.drain(cpu, self)
        # apply_to_existing_page_range(existing_page_cb) over the window
        pt = self.pt
        vm = pt.vmap
        start = self.kern_vm_start
        end = start + SZ_4G + GUARD_SZ // 2
        tables = sum(
            1
            for idx in range(start >> PMD_SHIFT, ((end - 1) >> PMD_SHIFT) + 1)
            if idx in vm.ptes or idx in vm.huge
        )
        span = FreedSpan(0, self.max_entries, pfns=list(self.pfn.values()))
        self.strategy.teardown(self, span)
        self.pfn.clear()
        self.scratch.clear()
        yield self.env.timeout(int(tables * 512 * self.pte_ns))
        yield from self.give_back(cpu, [span])
        if self.kern_vm is not None:
            yield from self.kernel.vmalloc.free_vm_area(cpu, self.kern_vm)
            self.metrics.counters["mem.arena.kva_bytes"] -= self.kern_vm.size
            self.metrics.counters["arena.arenas"] -= 1
        self.rt.destroy()
        work = self._tree_ns() + self.slab_ns
        if self.scratch_pfn is not None:
            yield from self.pa.free_pages(cpu, self.scratch_pfn, 0)
            self._hold(-1)
            self.scratch_pfn = None
        yield self.env.timeout(int(work))
        self._use(-self.in_use)
        self.dead = True
        self.metrics.latency("arena_map_free", self.env.now - t_start)

    # -- invariants (for tests) -------------------------------------------------------------
    def check(self) -> None:
        """The model's invariants: each page is in the kernel view once and
        where the arena thinks; the user view maps what the kernel view
        maps; every held page is allocated in the buddy allocator; the
        range tree is sound."""
        self.rt.check()
        pt = self.pt
        buddy = self.pa.buddy
        seen: set[int] = set()
        for pgoff, pfn in self.pfn.items():
            mp = pt.lookup(self.kaddr(pgoff))
            if mp is None or mp.pfn != pfn or mp.shift != PAGE_SHIFT:
                raise SimulationError(f"arena pgoff {pgoff}: kernel PTE {mp}")
            if pfn in seen:
                raise SimulationError(f"arena pfn {pfn:#x} mapped twice")
            seen.add(pfn)
            if buddy.allocated.get(pfn) != 0:
                raise SimulationError(f"arena pfn {pfn:#x} not allocated")
            if self.rt.free_in(pgoff, 1):
                raise SimulationError(f"arena pgoff {pgoff} mapped but free")
        for pgoff in self.scratch:
            mp = pt.lookup(self.kaddr(pgoff))
            if mp is None or mp.pfn != self.scratch_pfn:
                raise SimulationError(f"arena pgoff {pgoff}: scratch PTE {mp}")
        if seen & self.strategy.check(self):
            raise SimulationError("arena: a page is both 4K-mapped and held")
        for pgoff, pfn in self.user.items():
            if self.strategy.backing_pfn(self, pgoff) != pfn:
                raise SimulationError(f"arena pgoff {pgoff}: user view {pfn:#x}")
