"""arch/x86/mm/pat/set_memory.c: changing kernel page attributes (CPA).

``set_memory_ro/rw/x/nx/rox/np`` and ``set_direct_map_invalid_noflush`` /
``set_direct_map_default_noflush`` as SimPy generators, following
``change_page_attr_set_clr()`` step by step:

1. nothing to set or clear: return;
2. ``kmap_flush_unused()`` (nothing on 64-bit) and ``vm_unmap_aliases()``:
   a hook, since mm/vmalloc.c owns it (its purge, vmap blocks and flush);
   the default is what it costs with nothing lazily freed and no vmap
   blocks: taking and dropping ``vmap_purge_lock``;
3. ``__change_page_attr_set_clr()``: one chunk at a time under
   ``cpa_lock``; ``__change_page_attr()`` looks the address up:

   - a 4 KiB PTE gets the new permissions (``set_pte_atomic``), and
     ``CPA_FLUSHTLB`` is set only if that changes the entry;
   - a 2 MiB / 1 GiB leaf goes through ``should_split_large_page()``
     under ``pgd_lock``: same permissions -> kept, and the chunk covers the
     rest of the large page; the request covers the whole aligned large
     page -> changed in place; otherwise ``split_large_page()``: drop
     ``cpa_lock``, ``alloc_pages(GFP_KERNEL, 0)``, retake it; under
     ``pgd_lock`` look again (another CPU may have split it meanwhile: then
     free the page), fill 512 entries, count the split, install, and
     ``flush_tlb_all()`` while still holding ``pgd_lock``; then repeat;
   - after each chunk of a primary request for an address outside the
     direct map, ``cpa_process_alias()`` changes the direct-map alias of the
     same pfns (``__va(pfn)``) and sets ``force_flush_all``. NX is never
     propagated to the direct map ("Directmap always has NX set", commit
     127960a05548, v6.2); before that commit a change of NX alone skipped
     alias processing altogether (``checkalias``). Era knob
     ``kernel.cpa_nx_alias``. The kernel-image high-map alias is not
     modelled (no kernel-image pfns here);
4. nothing changed in the primary range: no flush. Otherwise ``cpa_flush()``:
   ``force_flush_all`` or more than ``tlb_single_page_flush_ceiling`` pages
   -> ``flush_tlb_all()``; else ``on_each_cpu()`` with one INVLPG per page
   (the flush model's ``kernel_range``);
5. ``CPA_COLLAPSE`` (passed by ``set_memory_rox()`` since commit
   41d88484c71c, merged for v6.15; era knob ``kernel.cpa_collapse``):
   ``collapse_large_pages()`` over every 2 MiB of the primary range under
   ``pgd_lock``; if anything collapsed, ``flush_tlb_all()`` and free the
   old tables.

``set_memory_rox()`` is native (one CPA call clearing RW and NX) since
commit b38994948567 (v6.2); before, callers ran ``set_memory_ro()`` then
``set_memory_x()``, which is what ``kernel.cpa_rox: ro_then_x`` does.
``set_direct_map_*_noflush()`` (``__set_pages_np`` / ``__set_pages_p``)
call ``__change_page_attr_set_clr()`` directly with ``CPA_NO_CHECK_ALIAS``:
no ``vm_unmap_aliases()``, no final flush, though a split still flushes.

Costs: ``pte_write_ns`` per entry looked up and written, 512 of them to fill
a split table (and to examine one for collapse: an estimate, a compare per
entry costed like a store); the split page through the page allocator when
one is given; flushes from the flush model. Locks: ``cpa_lock``,
``pgd_lock`` (spinlocks), ``vmap_purge_lock`` in the default hook.

A split whose table page cannot be allocated (memory exhausted, reclaim
found nothing) fails as ``split_large_page()`` does: -ENOMEM from
``__change_page_attr()`` ends the call, what was changed stays changed and
is flushed on every CPU (``cpa_flush_all()``), the rest keeps its
permissions; callers of ``set_memory_*()``
mostly ignore the return. Counted as ``pageattr.enomem``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.constants import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGES_PER_PMD,
    PAGES_PER_PUD,
    PMD_SIZE,
)
from simcore.errors import SimulationError
from simcore.kernel.pgtable import (
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    FLUSH_ALL,
    LEVEL_2M,
    LEVEL_4K,
    KernelPageTables,
    Mapping,
)
from simcore.kernel.set_memory_calls import ENOMEM, SetMemoryCalls, UnmapAliasesHook

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

CPA_FLUSHTLB = 1
CPA_ARRAY = 2
CPA_PAGES_ARRAY = 4
CPA_NO_CHECK_ALIAS = 8
CPA_COLLAPSE = 16


@dataclass
class CpaData:
    """struct cpa_data for a contiguous range (no CPA_ARRAY callers here)."""

    vaddr: int
    numpages: int
    mask_set: int
    mask_clr: int
    flags: int = 0
    curpage: int = 0
    pfn: int = -1
    force_flush_all: bool = False


class Cpa(SetMemoryCalls):
    """Page-attribute changes on the simulated machine.

    ``pfn_of(addr)`` gives the page behind a vmalloc address for alias
    processing; by default the pfn recorded in the page tables (the vmalloc
    side maps through :meth:`KernelPageTables.vmap_pages_range`). Assign
    ``vm_unmap_aliases`` (a generator function taking the CPU) to plug in
    mm/vmalloc.c's own. The default hook's ``vmap_purge_lock`` is an
    instance of its own: it reports under the same lock name but does not
    exclude mm/vmalloc.c's purges until that hook is plugged in.
    """

    def __init__(
        self,
        kernel: Kernel,
        pagetables: KernelPageTables,
        *,
        pfn_of: Callable[[int], int | None] | None = None,
        vm_unmap_aliases: UnmapAliasesHook | None = None,
    ) -> None:
        super().__init__(kernel, pagetables, vm_unmap_aliases)
        self.pfn_of = pfn_of
        k = kernel.knobs
        self.collapse_era = k.cpa_collapse
        self.nx_alias = k.cpa_nx_alias
        self.native_rox = k.cpa_rox == "native"
        self.ceiling = self.flush.ceiling
        self.pte_ns = kernel.profile.kernel_costs.pte_write_ns.value
        self.cpa_lock = kernel.machine.spinlock("cpa_lock")
        self.pgd_lock = pagetables.pgd_lock

    # -- the set_memory_*() family (set_memory_calls.py), x86's rox ---------------
    def set_memory_rox(self, cpu: int, addr: int, numpages: int):
        """set_memory_rox(): native one-call RO+X (v6.2+, with CPA_COLLAPSE
        in the collapse era), or set_memory_ro() then set_memory_x()."""
        if not self.native_rox:
            t0 = self.env.now
            ro = yield from self.change_page_attr_set_clr(
                cpu, addr, numpages, 0, _PAGE_RW
            )
            x = yield from self.change_page_attr_set_clr(
                cpu, addr, numpages, 0, _PAGE_NX
            )
            self.metrics.latency("set_memory_rox", self.env.now - t0)
            return ro or x
        flag = CPA_COLLAPSE if self.collapse_era else 0
        return (
            yield from self._timed(
                "set_memory_rox", cpu, addr, numpages, 0, _PAGE_RW | _PAGE_NX, flag
            )
        )

    def set_direct_map_invalid_noflush(self, cpu: int, addr: int, numpages: int = 1):
        """__set_pages_np(): the direct-map page at ``addr`` (its
        page_address()) not present; the caller flushes."""
        c = CpaData(addr, numpages, 0, _PAGE_PRESENT | _PAGE_RW, CPA_NO_CHECK_ALIAS)
        return (yield from self._set_clr(cpu, c, primary=True))

    def set_direct_map_default_noflush(self, cpu: int, addr: int, numpages: int = 1):
        """__set_pages_p(): back to present and writable; no flush."""
        c = CpaData(addr, numpages, _PAGE_PRESENT | _PAGE_RW, 0, CPA_NO_CHECK_ALIAS)
        return (yield from self._set_clr(cpu, c, primary=True))

    def _change(self, cpu, addr, numpages, mask_set, mask_clr, flags=0):
        return (
            yield from self.change_page_attr_set_clr(
                cpu, addr, numpages, mask_set, mask_clr, flags
            )
        )

    # -- change_page_attr_set_clr() ----------------------------------------------------
    def change_page_attr_set_clr(
        self,
        cpu: int,
        addr: int,
        numpages: int,
        mask_set: int,
        mask_clr: int,
        in_flag: int = 0,
    ):
        if not (mask_set or mask_clr) or numpages <= 0:
            return 0
        addr &= ~(PAGE_SIZE - 1)  # the kernel warns and aligns
        yield from self.vm_unmap_aliases(cpu)
        c = CpaData(addr, numpages, mask_set, mask_clr, in_flag)
        # Before v6.2: "No alias checking for _NX bit modifications".
        primary = self.nx_alias or (mask_set | mask_clr) != _PAGE_NX
        ret = yield from self._set_clr(cpu, c, primary=primary)
        if c.flags & CPA_FLUSHTLB:
            if ret:
                # "On error; flush everything to be sure": cpa_flush_all()
                yield self.env.timeout(self.flush.kernel_range(cpu, *FLUSH_ALL))
            else:
                yield from self._cpa_flush(cpu, c)
        return ret

    def _set_clr(self, cpu: int, c: CpaData, *, primary: bool):
        """__change_page_attr_set_clr(): 0, or -ENOMEM."""
        if not (c.mask_set | c.mask_clr):
            return 0
        numpages = rem = c.numpages
        while rem:
            c.numpages = rem
            extra = yield from self.cpa_lock.take(cpu)
            ret = yield from self._change_page_attr(cpu, c, primary, extra)
            self.cpa_lock.release(cpu)
            if not ret and primary and not c.flags & CPA_NO_CHECK_ALIAS:
                ret = yield from self._process_alias(cpu, c)
            if ret:
                c.numpages = numpages
                return ret
            if not 0 < c.numpages <= rem:
                raise SimulationError(f"CPA chunk of {c.numpages} of {rem} pages")
            rem -= c.numpages
            c.curpage += c.numpages
        c.numpages = numpages
        return 0

    def _change_page_attr(self, cpu: int, c: CpaData, primary: bool, extra: float):
        """__change_page_attr(): one 4K PTE, or one large page kept/split;
        0, or -ENOMEM when a split found no page."""
        addr = c.vaddr + (c.curpage << PAGE_SHIFT)
        while True:
            m = self.pt.lookup(addr)
            if m is None:
                self._process_fault(c, addr, primary)
                yield self.env.timeout(int(self.pte_ns + extra))
                return 0
            if m.shift == LEVEL_4K:
                new = (m.flags & ~c.mask_clr) | c.mask_set
                c.pfn = self._pfn(addr, m)
                if new != m.flags:
                    self.pt.set_leaf(addr, LEVEL_4K, new)
                    c.flags |= CPA_FLUSHTLB
                c.numpages = 1
                yield self.env.timeout(int(self.pte_ns + extra))
                return 0
            split = yield from self._should_split_large_page(cpu, c, addr, m, extra)
            extra = 0
            if not split:
                return 0
            ok = yield from self._split_large_page(cpu, addr, m)
            if not ok:
                return -ENOMEM

    def _pfn(self, addr: int, m: Mapping) -> int:
        if self.pfn_of is not None and not self.pt.in_direct_map(addr):
            pfn = self.pfn_of(addr)
            if pfn is not None:
                return pfn
        return m.pfn

    def _process_fault(self, c: CpaData, addr: int, primary: bool) -> None:
        """__cpa_process_fault(): holes are fine in the direct map and on
        non-primary paths; a primary address with no PTE is a caller bug
        (the kernel WARNs "CPA: called for zero pte")."""
        c.numpages = 1
        if not primary:
            return
        if self.pt.in_direct_map(addr):
            c.pfn = self.pt.direct.pfn_of(addr)
            return
        raise SimulationError(f"CPA: called for zero pte at {addr:#x}")

    def _should_split_large_page(self, cpu, c: CpaData, addr: int, m: Mapping, extra):
        """should_split_large_page() under pgd_lock."""
        extra += yield from self.pgd_lock.take(cpu)
        lp_pages = PAGES_PER_PMD if m.shift == LEVEL_2M else PAGES_PER_PUD
        lp_bytes = lp_pages << PAGE_SHIFT
        lpaddr = addr & ~(lp_bytes - 1)
        left = (lpaddr + lp_bytes - addr) >> PAGE_SHIFT
        c.numpages = min(c.numpages, left)
        req = (m.flags & ~c.mask_clr) | c.mask_set
        c.pfn = self._pfn(addr, m)
        if req == m.flags:
            split = False  # cpa_inc_lp_sameprot(): keep the large page
        elif addr != lpaddr or c.numpages != lp_pages:
            split = True
        else:
            self.pt.set_leaf(addr, m.shift, req)  # cpa_inc_lp_preserved()
            c.flags |= CPA_FLUSHTLB
            split = False
        yield self.env.timeout(int(self.pte_ns + extra))
        self.pgd_lock.release(cpu)
        return split

    def _split_large_page(self, cpu: int, addr: int, m: Mapping):
        """split_large_page() + __split_large_page(); cpa_lock held on entry
        and on return. False: no page for the table (-ENOMEM)."""
        self.cpa_lock.release(cpu)
        page = yield from self.pt.alloc_table_page(cpu, zero=False)
        extra = yield from self.cpa_lock.take(cpu)
        if page is False:
            self.metrics.inc("pageattr.enomem")
            yield self.env.timeout(int(extra))
            return False
        extra += yield from self.pgd_lock.take(cpu)
        cur = self.pt.lookup(addr)
        if cur is None or cur.shift != m.shift:
            # Another CPU split it while cpa_lock was dropped.
            yield self.env.timeout(int(self.pte_ns + extra))
            self.pgd_lock.release(cpu)
            yield from self.pt.free_table_page(cpu, page)
            return True
        self.pt.split(addr, m.shift, page)
        yield self.env.timeout(int((1 + 512) * self.pte_ns + extra))
        # flush_tlb_all() with pgd_lock (and cpa_lock) held: mixed-size TLB
        # entries for one address are undefined behaviour on x86.
        yield self.env.timeout(self.flush.kernel_range(cpu, *FLUSH_ALL))
        self.pgd_lock.release(cpu)
        return True

    def _process_alias(self, cpu: int, c: CpaData):
        """cpa_process_alias(): the direct-map alias of the pfns just done."""
        vaddr = c.vaddr + (c.curpage << PAGE_SHIFT)
        if self.pt.in_direct_map(vaddr):
            return 0  # the primary call touched the direct map already
        if not 0 <= c.pfn < self.pt.direct.nr_pages:
            return 0  # !pfn_range_is_mapped()
        mask_set, mask_clr = c.mask_set, c.mask_clr
        if self.nx_alias:
            mask_set &= ~_PAGE_NX
            mask_clr &= ~_PAGE_NX
        alias = CpaData(
            self.pt.page_address(c.pfn),
            c.numpages,
            mask_set,
            mask_clr,
            c.flags & ~(CPA_ARRAY | CPA_PAGES_ARRAY),
        )
        c.force_flush_all = True
        return (yield from self._set_clr(cpu, alias, primary=False))

    def _cpa_flush(self, cpu: int, c: CpaData):
        """cpa_flush() (no cache-attribute changes are modelled)."""
        if c.force_flush_all or c.numpages > self.ceiling:
            ns = self.flush.kernel_range(cpu, *FLUSH_ALL)
        else:
            ns = self.flush.kernel_range(cpu, c.vaddr, c.vaddr + c.numpages * PAGE_SIZE)
        yield self.env.timeout(ns)
        if c.flags & CPA_COLLAPSE:
            yield from self._collapse_large_pages(cpu, c)

    def _collapse_large_pages(self, cpu: int, c: CpaData):
        """cpa_collapse_large_pages() over the primary range."""
        start = c.vaddr & ~(PMD_SIZE - 1)
        end = c.vaddr + c.numpages * PAGE_SIZE
        freed: list[int | None] = []
        addr = start
        while addr < end:
            extra = yield from self.pgd_lock.take(cpu)
            examined, tables = self.pt.collapse(addr)
            work = (512 if examined else 1) * self.pte_ns + extra
            yield self.env.timeout(int(work))
            self.pgd_lock.release(cpu)
            freed += tables
            addr += PMD_SIZE
        if not freed:
            return
        yield self.env.timeout(self.flush.kernel_range(cpu, *FLUSH_ALL))
        for page in freed:
            yield from self.pt.free_table_page(cpu, page)
