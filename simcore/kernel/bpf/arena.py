"""kernel/bpf/arena.c: BPF_MAP_TYPE_ARENA, sparse memory shared by BPF
programs (kernel view) and one user process (user view).

Kernel functions modelled, step by step with their locks. The arena's
life is here:

- ``arena_map_alloc()``: ``get_vm_area(KERN_VM_SZ, VM_SPARSE | VM_USERMAP)``
  (4 GiB + 64 KiB of KVA whatever the arena's size), ``range_tree_set(0,
  max_entries)``; from Dec 2025 ``populate_pgtable_except_pte()`` (every
  page-table level of the 4 GiB + 32 KiB window allocated at once, about a
  million callback visits) and, in the scratch-page era, the scratch page;
- ``arena_map_free()``: pending deferred frees are waited for,
  ``apply_to_existing_page_range()`` frees every present page *without* a
  flush (the kernel relies on nothing touching the range any more), then
  ``free_vm_area()`` (lazy KVA free: 1 M pages of ``vmap_lazy_nr``, so a
  purge with a full flush follows).

The other parts of arena.c are mixed into :class:`BpfArena` from sibling
modules, each naming the functions it models:

- :mod:`~simcore.kernel.bpf.arena_mm`: the user process (:class:`UserMm`),
  ``arena_get_unmapped_area()`` + ``arena_map_mmap()``, ``compute_pgoff()``,
  ``munmap()`` and ``arena_vm_close()``;
- :mod:`~simcore.kernel.bpf.arena_alloc`: ``arena_alloc_pages()``
  (``bpf_arena_alloc_pages``) with ``bpf_map_alloc_pages()`` and the
  kernel-view PTEs;
- :mod:`~simcore.kernel.bpf.arena_fault`: ``arena_vm_fault()``, and BPF
  accesses to an unallocated page (``ex_handler_bpf()``,
  ``bpf_arena_handle_page_fault()``);
- :mod:`~simcore.kernel.bpf.arena_free`: ``arena_free_pages()``
  (``bpf_arena_free_pages``), the deferred frees (``arena_free_irq()``,
  ``arena_free_worker()``) and ``zap_pages()``.

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

from typing import TYPE_CHECKING

from simcore.constants import PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT, SZ_4G
from simcore.constants import PAGE_SIZE as PAGE
from simcore.errors import SimulationError
from simcore.kernel.bpf.arena_alloc import ARENA_BATCH, ArenaAlloc
from simcore.kernel.bpf.arena_fault import (
    KERNEL_FAULT_NS,
    STREAM_REPORT_NS,
    USER_FAULT_NS,
    ArenaFault,
)
from simcore.kernel.bpf.arena_free import (
    ZAP_NS,
    ArenaFree,
    FreedSpan,
    keys_in,
    pages_in,
)
from simcore.kernel.bpf.arena_mm import LO32, MMAP_BASE, ArenaVma, UserMm
from simcore.kernel.bpf.range_tree import RangeTree
from simcore.kernel.vmalloc import VM_SPARSE, VM_USERMAP

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# the arena's names, its parts' included, as the strategies, the workload
# and the tests import them
__all__ = [
    "ARENA_BATCH",
    "GUARD_SZ",
    "KERN_VM_SZ",
    "KERNEL_FAULT_NS",
    "LO32",
    "MMAP_BASE",
    "STREAM_REPORT_NS",
    "SZ_4G",
    "USER_FAULT_NS",
    "ZAP_NS",
    "BpfArena",
    "FreedSpan",
    "UserMm",
    "keys_in",
    "pages_in",
]

# reach of the s16 ``off`` of LDX/STX, rounded up to two pages
GUARD_SZ = 1 << 16
KERN_VM_SZ = SZ_4G + GUARD_SZ


class BpfArena(ArenaVma, ArenaAlloc, ArenaFault, ArenaFree):
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

    # -- teardown ---------------------------------------------------------------------------------
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
