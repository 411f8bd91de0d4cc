"""arch/arm64/mm/pageattr.c: changing kernel page permissions on arm64.

The same ``set_memory_*()`` / ``set_direct_map_*_noflush()`` interface as
x86's CPA (:mod:`simcore.kernel.set_memory`), but arm64 never splits a
live block mapping to change permissions ("splitting live section mappings
into page mappings may cause TLB conflicts", the comment above
``change_memory_common()``). So:

``change_memory_common(addr, numpages, set, clear)``:

1. ``find_vm_area(addr)``: the range must lie inside one ``VM_ALLOC``
   area, which vmalloc maps with pages; anything else is -EINVAL and
   changes nothing (``pageattr.einval``);
2. with ``rodata=full`` and a change of ``PTE_RDONLY``: the linear-map
   alias of *every* page of the area (``area->pages[i]``, the whole area,
   not only the range) gets the same change, one
   ``__change_memory_common()`` per page, each ending in its own
   ``flush_tlb_kernel_range()`` of that page (c55191e96caa, v4.20);
3. ``vm_unmap_aliases()`` (mm/vmalloc.c's, plugged in as for x86);
4. ``__change_memory_common(start, size)``: ``apply_to_page_range()`` over
   the vmalloc PTEs (``change_page_range()`` per PTE), then one
   ``flush_tlb_kernel_range()`` of the range: TLBI ...IS broadcasts, no
   IPIs (``flush.broadcast``).

``set_memory_rox()`` is the generic one (include/linux/set_memory.h):
``set_memory_ro()`` then ``set_memory_x()``; arm64 has no native one.

``set_direct_map_invalid_noflush()`` / ``set_direct_map_default_noflush()``
change one linear-map PTE with no flush, and do nothing unless
``can_set_direct_map()``: the linear map is page-mapped (``rodata=full``).
With ``rodata=on`` the linear map keeps its block mappings and neither the
linear alias of a vmalloc area nor ``set_direct_map_*()`` touches it.

When the linear map is block-mapped under ``rodata=full`` (the
``linear_map_split`` era, on CPUs with BBML2_NOABORT), a change first
splits the block leaves covering the linear range to pages
(``split_kernel_leaf_mapping()``): a table page, 512 entries, the block
replaced in place without break-before-make, and no flush for the split
itself (BBML2 lets the old and the new entries coexist in the TLB).

Costs: ``pte_write_ns`` per entry read and written; a one-page
``apply_to_page_range()`` walks init_mm's tables from the top, one 4K walk
of hot tables (the profile's walker, as for the text-poke refill);
flushes from the flush model; locks: none for existing kernel PTEs (init_mm
entries are changed without ``page_table_lock``), ``vmap_purge_lock`` in
the default ``vm_unmap_aliases()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simcore.constants import PAGE_SHIFT, PAGE_SIZE, PAGES_PER_PMD
from simcore.errors import SimulationError
from simcore.kernel.pgtable import (
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    LEVEL_4K,
    KernelPageTables,
)
from simcore.kernel.set_memory_calls import ENOMEM, SetMemoryCalls, UnmapAliasesHook
from simcore.kernel.vmalloc.area import VM_ALLOC

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

EINVAL = 22
# The model's permission bits stand for arm64's: _PAGE_RW is !PTE_RDONLY
# (with PTE_WRITE), _PAGE_NX is PTE_PXN, _PAGE_PRESENT is PTE_VALID.


class Arm64PageAttr(SetMemoryCalls):
    """``set_memory_*()`` on arm64 (see the module doc)."""

    def __init__(
        self,
        kernel: Kernel,
        pagetables: KernelPageTables,
        *,
        find_vm_area: Callable[[int], Any],
        vm_unmap_aliases: UnmapAliasesHook | None = None,
    ) -> None:
        super().__init__(kernel, pagetables, vm_unmap_aliases)
        self.find_vm_area = find_vm_area
        self.rodata_full = kernel.knobs.rodata == "full"
        # split_kernel_leaf_mapping() serialises on a global mutex
        self.split_lock = kernel.machine.mutex("pgtable_split_lock")
        # a valid PTE written: with its barriers before v6.16, and in v6.16+
        # apply_to_pte_range()'s lazy-MMU batch closed by one barrier pair
        self.pte_ns = pagetables.set_ns
        self.batch_ns = pagetables.batch_ns
        # apply_to_page_range() of one page: a walk from the pgd of hot tables
        self.walk_ns = kernel.walk_4k_ns

    # -- the set_memory_*() family (set_memory_calls.py), arm64's rox -------------
    def set_memory_rox(self, cpu: int, addr: int, numpages: int):
        """The generic set_memory_rox(): set_memory_ro(), then set_memory_x()."""
        t0 = self.env.now
        yield from self.change_memory_common(cpu, addr, numpages, 0, _PAGE_RW)
        yield from self.change_memory_common(cpu, addr, numpages, 0, _PAGE_NX)
        self.metrics.latency("set_memory_rox", self.env.now - t0)
        return 0

    def _change(self, cpu, addr, numpages, mask_set, mask_clr, flags=0):
        return (
            yield from self.change_memory_common(
                cpu, addr, numpages, mask_set, mask_clr
            )
        )

    # -- the linear map ------------------------------------------------------------
    def can_set_direct_map(self) -> bool:
        """can_set_direct_map(): the linear map can be changed page by page
        (rodata=full; debug_pagealloc and KFENCE are not modelled)."""
        return self.rodata_full

    def set_direct_map_invalid_noflush(self, cpu: int, addr: int, numpages: int = 1):
        """set_direct_map_invalid_noflush(): clear PTE_VALID of the linear
        map page at ``addr``; the caller flushes."""
        if self.can_set_direct_map():
            return (
                yield from self._linear(
                    cpu, addr, numpages, 0, _PAGE_PRESENT | _PAGE_RW
                )
            )
        return 0

    def set_direct_map_default_noflush(self, cpu: int, addr: int, numpages: int = 1):
        """set_direct_map_default_noflush(): valid and writable again."""
        if self.can_set_direct_map():
            return (
                yield from self._linear(
                    cpu, addr, numpages, _PAGE_PRESENT | _PAGE_RW, 0
                )
            )
        return 0

    # -- change_memory_common() ------------------------------------------------------
    def change_memory_common(
        self, cpu: int, addr: int, numpages: int, mask_set: int, mask_clr: int
    ):
        start = addr & ~(PAGE_SIZE - 1)  # the kernel warns and aligns
        end = start + numpages * PAGE_SIZE
        area = self.find_vm_area(start)
        # vm->size counts the guard page, and so does the kernel's check
        # a huge-mapped area is refused too (VM_ALLOW_HUGE_VMAP in the check
        # of later kernels; splitting a live block is what arm64 avoids)
        if (
            area is None
            or end > area.addr + area.size
            or not area.flags & VM_ALLOC
            or area.page_shift > PAGE_SHIFT
        ):
            # -EINVAL: nothing changes (callers of set_memory_*() mostly
            # ignore it); counted, since the memory keeps its permissions
            self.metrics.inc("pageattr.einval")
            yield self.env.timeout(int(self.walk_ns))
            return -EINVAL
        if numpages <= 0 or not (mask_set or mask_clr):
            return 0
        if self.rodata_full and (mask_set | mask_clr) == _PAGE_RW:
            # the linear alias of every page of the area, one flush each
            for pfn in area.pages:
                alias = self.pt.page_address(pfn)
                yield from self._linear(cpu, alias, 1, mask_set, mask_clr)
                yield self.env.timeout(
                    self.flush.kernel_range(cpu, alias, alias + PAGE_SIZE)
                )
        yield from self.vm_unmap_aliases(cpu)
        changed = self._apply(start, numpages, mask_set, mask_clr)
        ns = self.walk_ns + numpages * self.pte_ns + self.batch_ns
        if changed:
            self.metrics.inc("pageattr.ptes_changed", changed)
        yield self.env.timeout(int(ns) + self.flush.kernel_range(cpu, start, end))
        return 0

    def _apply(self, start: int, numpages: int, mask_set: int, mask_clr: int) -> int:
        """apply_to_page_range() with change_page_range(): the vmalloc PTEs."""
        changed = 0
        for i in range(numpages):
            a = start + (i << PAGE_SHIFT)
            m = self.pt.lookup(a)
            if m is None:
                continue  # apply_to_page_range() skips nothing here; a hole
            if m.shift != LEVEL_4K:
                raise SimulationError(
                    f"change_memory_common() at {a:#x}: a block mapping "
                    "(arm64 refuses to change part of one)"
                )
            new = (m.flags & ~mask_clr) | mask_set
            if new != m.flags:
                self.pt.set_leaf(a, LEVEL_4K, new)
                changed += 1
        return changed

    def _linear(self, cpu: int, addr: int, numpages: int, mask_set: int, mask_clr: int):
        """__change_memory_common() / apply_to_page_range() on linear-map
        pages (the flush, where there is one, is the caller's), after
        split_kernel_leaf_mapping() where the linear map has blocks. 0, or
        -ENOMEM when a split found no table page: the pages from there on
        keep their permissions (counted as ``pageattr.enomem``)."""
        ret = 0
        done = numpages
        for i in range(numpages):
            a = addr + (i << PAGE_SHIFT)
            m = self.pt.lookup(a)
            if m is None:
                continue
            if m.shift != LEVEL_4K:
                ok = yield from self._split_leaf(cpu, a, m)
                if not ok:
                    ret, done = -ENOMEM, i
                    break
                m = self.pt.lookup(a)
            new = (m.flags & ~mask_clr) | mask_set
            if new != m.flags:
                self.pt.set_leaf(a, LEVEL_4K, new)
        ns = done * (self.walk_ns + self.pte_ns + self.batch_ns)
        yield self.env.timeout(int(ns))
        return ret

    def _split_leaf(self, cpu: int, addr: int, m):
        """split_kernel_leaf_mapping() under pgtable_split_lock: a block
        leaf of the linear map becomes a table of the next size, without
        break-before-make and so without a flush (BBML2_NOABORT), down to
        the page at ``addr``. False: no page for a table (-ENOMEM)."""
        yield from self.split_lock.lock(cpu)
        while m.shift != LEVEL_4K:
            page = yield from self.pt.alloc_table_page(cpu, zero=False)
            if page is False:
                # -ENOMEM: the levels split so far stay split
                self.metrics.inc("pageattr.enomem")
                self.split_lock.release(cpu)
                return False
            self.pt.split(addr, m.shift, page)
            yield self.env.timeout(int((1 + PAGES_PER_PMD) * self.pte_ns))
            m = self.pt.lookup(addr)
        self.split_lock.release(cpu)
        return True
