"""``perm_alloc``: Rick Edgecombe's permission-aware vmalloc (RFC, Nov 2020).

Models the x86 back end of "New permission vmalloc interface"
(20201120202426.18009-1-rick.p.edgecombe@intel.com; patch 10,
arch/x86/mm/vmalloc.c, 20201120202426.18009-11-...) as the BPF JIT
(patch 2) and the module loader (patches 3-5: one allocation per
permission region, ``module_map()``) use it:

- ``perm_alloc(vstart, vend, page_cnt, perms)``: a kmalloc()ed
  descriptor, ``__get_vm_area_caller(VM_MAP)`` in the module range (KVA
  only), a kvmalloc()ed pages array, then ``get_perm_page()`` for each
  page: one ``pages_lock`` section per page, taking the head of a list of
  pages already removed from the direct map. An empty list is replenished
  (``replenish_pages()``) with a zeroed order-9 block: 512
  ``set_direct_map_invalid_noflush()``, one flush, ``vm_unmap_aliases()``.
  Without a free order-9 block one order-0 page comes instead
  (``replenish_pages_one()``), still mapped; ``perm_alloc()`` unmaps such
  pages itself and flushes once. The pages are then mapped at their final
  permission (``map_kernel_range()``): nothing changes permission on load;
- ``perm_writable_addr()``: for a mapping that is not writable, a
  vmalloc()ed staging buffer, written with plain stores (when that
  vmalloc() fails the RFC would write through NULL, "TODO could fail";
  here the bytes go in place with text_poke(), counted as
  ``mem.exec.staging_failures``);
- ``perm_writable_finish()``: ``text_mutex`` held across one
  ``text_poke()`` per page from the buffer into the final mapping (local
  flushes only), then vfree() of the buffer;
- ``perm_change()``: ``set_memory_noalias_noflush()`` (the vmalloc alias
  only: the direct map is unmapped already) and one flush of the range;
  the loader's ro_after_init transition;
- ``perm_free()``: ``vunmap()`` (lazy KVA), a flush of the range only if the
  mapping was executable, the pages back at the head of the list, still
  unmapped;
- the shrinker (``perm_shrink_scan()``) maps pages back, flushes and frees
  them: :meth:`PermAlloc.shrink`, for memory pressure.

Permissions by kind follow ``module_map()``: text RX, read-only data R,
``ro_after_init`` RW until its finalize (after init) makes it R, other
data RW; BPF programs RX.

The RFC's ``grow_range()`` keeps only the start of the replenished block,
so its flush would cover no page; the model flushes the whole block, as
the function's comment intends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SIZE
from simcore.kernel.pgtable import PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX
from simcore.kernel.set_memory import CPA_NO_CHECK_ALIAS, CpaData
from simcore.kernel.vmalloc import VM_MAP, VmArea
from simcore.kernel.vmscan import Shrinker
from simcore.strategies.base import RO_KINDS, TEXT_KINDS, ExecAlloc, Strategy
from simcore.strategies.params import param
from simcore.strategies.unmapped_blocks import (
    BlockParams,
    alloc_block,
    flush_direct_map,
    publish_cache,
    remap_pages,
    unmap_pages,
)
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# include/linux/vmalloc.h of the RFC: virtual_perm bits
PERM_R, PERM_W, PERM_X = 1, 2, 4
PERM_RX, PERM_RW = PERM_R | PERM_X, PERM_R | PERM_W
_PROT = {PERM_RX: PAGE_KERNEL_ROX, PERM_R: PAGE_KERNEL_RO, PERM_RW: PAGE_KERNEL}


def perms_of(kind: str) -> int:
    """The permission module_map() / the BPF JIT give a kind at allocation."""
    if kind in TEXT_KINDS:
        return PERM_RX
    if kind in RO_KINDS and kind != "module_ro_after_init":
        return PERM_R
    return PERM_RW


class PermParams(BlockParams):
    block_size: Size = param(
        PMD_SIZE,
        help="block replenish_pages() takes when the list of unmapped pages is "
        "empty, a power of two from 4K to 4M: one flush and one "
        "vm_unmap_aliases() per block",
        source="arch/x86/mm/vmalloc.c replenish_pages(): an order-9 "
        "alloc_pages() (20201120202426.18009-11-rick.p.edgecombe@intel.com)",
    )


@dataclass(eq=False)
class PermAllocation:
    """struct perm_allocation: the area, its pages, the current permission
    and the staging buffer while one exists."""

    area: VmArea
    perms: int
    writable: VmArea | None = None


class PermAlloc(Strategy):
    name = "perm_alloc"
    first_release = None
    release_source = (
        "perm_alloc RFC (20201120202426.18009-1-rick.p.edgecombe@intel.com), "
        "never merged"
    )
    summary = "final-permission vmalloc over a cache of unmapped 2M blocks"
    models = (
        "perm_alloc RFC, Nov 2020 (20201120202426.18009-1-rick.p.edgecombe@intel.com)"
    )
    arches = ("x86_64",)
    arch_reason = (
        "the RFC's permission changes are x86 CPA on the vmalloc alias alone "
        "(__change_page_attr_set_clr() with CPA_NO_CHECK_ALIAS), which arm64 "
        "has no counterpart of"
    )
    Params = PermParams
    params: PermParams

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        c = kernel.profile.kernel_costs
        self.slab_ns = c.slab_alloc_ns.value
        # list_del()/list_add() of one page: a node touched (estimate, as
        # a tree node in kernel_costs.rb_node_visit_ns)
        self.list_ns = c.rb_node_visit_ns.value
        self.pages_lock = kernel.machine.spinlock("pages_lock")
        self.pages: list[int] = []  # the list; its head is the end
        self.mapped: set[int] = set()  # DIRECTMAP_UNPROTECTED pages
        # perm_alloc's shrinker: the cached pages, freed by shrink()
        kernel.shrinkers.register(
            Shrinker("perm_alloc", lambda: len(self.pages), self.shrink)
        )

    # -- the page cache ------------------------------------------------------
    def _replenish(self, cpu: int):
        """replenish_pages(); False when not even one page could be had."""
        order = self.params.block_order
        pfn = yield from alloc_block(self, cpu, order)
        if pfn is None:
            return (yield from self._replenish_one(cpu))
        n = 1 << order
        block = range(pfn, pfn + n)
        yield from unmap_pages(self, cpu, block)
        extra = yield from self.pages_lock.take(cpu)
        self.pages.extend(block)
        yield self.env.timeout(int(n * self.list_ns + extra))
        self.pages_lock.release(cpu)
        yield from flush_direct_map(self, cpu, pfn, n)
        yield from self.kernel.vmalloc.vm_unmap_aliases(cpu)
        self._cached(n)
        return True

    def _replenish_one(self, cpu: int):
        """replenish_pages_one(): one page, left in the direct map."""
        pfn = yield from self.kernel.page_alloc.alloc_pages(cpu, 0, zero=True)
        if pfn is None:
            return False
        extra = yield from self.pages_lock.take(cpu)
        self.pages.append(pfn)
        self.mapped.add(pfn)
        yield self.env.timeout(int(self.list_ns + extra))
        self.pages_lock.release(cpu)
        self._cached(1)
        return True

    def _cached(self, n: int) -> None:
        self.metrics.inc("mem.exec.cache_refills")
        self.account(0, n * PAGE)
        publish_cache(self, len(self.pages))

    def _get_perm_page(self, cpu: int):
        """get_perm_page(): the list head under pages_lock, replenishing
        first when the list is empty."""
        while True:
            extra = yield from self.pages_lock.take(cpu)
            pfn = self.pages.pop() if self.pages else None
            yield self.env.timeout(int(self.list_ns + extra))
            self.pages_lock.release(cpu)
            if pfn is not None:
                return pfn
            ok = yield from self._replenish(cpu)
            if not ok:
                return None

    def _put_pages(self, cpu: int, pfns: list[int]):
        """__perm_free_pages(): back to the head of the list, one section."""
        extra = yield from self.pages_lock.take(cpu)
        self.pages.extend(pfns)
        yield self.env.timeout(int(len(pfns) * self.list_ns + extra))
        self.pages_lock.release(cpu)
        publish_cache(self, len(self.pages))

    def shrink(self, cpu: int, nr_to_scan: int):
        """perm_shrink_scan(): up to ``nr_to_scan`` cached pages mapped back
        into the direct map, one flush, freed. Returns the pages freed."""
        out: list[int] = []
        while len(out) < nr_to_scan:
            extra = yield from self.pages_lock.take(cpu)
            pfn = self.pages.pop() if self.pages else None
            yield self.env.timeout(int(self.list_ns + extra))
            self.pages_lock.release(cpu)
            if pfn is None:
                break
            out.append(pfn)
        if out:
            self.mapped.difference_update(out)
            yield from remap_pages(self, cpu, out)
            lo, hi = min(out), max(out)
            yield from flush_direct_map(self, cpu, lo, hi - lo + 1)
            yield from self.kernel.page_alloc.free_pages_batch(cpu, out)
            self.account(0, -len(out) * PAGE)
        publish_cache(self, len(self.pages))
        return len(out)

    # -- perm_alloc() / perm_free() ------------------------------------------
    def perm_alloc(self, cpu: int, page_cnt: int, perms: int, caller: str):
        """Returns a PermAllocation, or None."""
        vm = self.kernel.vmalloc
        yield self.env.timeout(int(self.slab_ns))  # kmalloc() of the descriptor
        area = yield from vm.get_vm_area(
            cpu, page_cnt * PAGE, flags=VM_MAP, range_="modules"
        )
        if area is None:
            return None
        area.caller = caller
        yield self.env.timeout(int(self.slab_ns))  # kvmalloc() of pages[]
        pages: list[int] = []
        fresh: list[int] = []
        for _ in range(page_cnt):
            pfn = yield from self._get_perm_page(cpu)
            if pfn is None:
                break
            pages.append(pfn)
            if pfn in self.mapped:
                self.mapped.discard(pfn)
                fresh.append(pfn)
        if fresh:
            yield from unmap_pages(self, cpu, fresh)
            lo, hi = min(fresh), max(fresh)
            yield from flush_direct_map(self, cpu, lo, hi - lo + 1)
            yield from vm.vm_unmap_aliases(cpu)
        publish_cache(self, len(self.pages))
        ok = len(pages) == page_cnt
        if ok:
            ok = yield from self.kernel.pagetables.vmap_pages_range(
                cpu, area.addr, pages, prot=_PROT[perms]
            )
        if not ok:
            yield from self._put_pages(cpu, pages)
            yield from vm.free_vm_area(cpu, area)
            return None
        area.pages = pages
        area.nr_pages = page_cnt
        return PermAllocation(area, perms)

    def perm_writable_finish(self, cpu: int, alloc: PermAllocation):
        """text_poke() page by page from the staging buffer, vfree() it."""
        if alloc.writable is None:
            return
        area = alloc.area
        yield from self.kernel.text_poke.text_poke_each(
            cpu, area.addr, area.nr_pages, PAGE
        )
        yield from self.kernel.vmalloc.vfree(cpu, alloc.writable)
        alloc.writable = None

    def perm_change(self, cpu: int, alloc: PermAllocation, perms: int):
        """set_memory_noalias_noflush() (__change_page_attr_set_clr() on the
        vmalloc alias alone), then flush_tlb_kernel_range()."""
        if perms == alloc.perms:
            return
        area = alloc.area
        want, cur = _PROT[perms], _PROT[alloc.perms]
        c = CpaData(
            area.addr, area.nr_pages, want & ~cur, cur & ~want, CPA_NO_CHECK_ALIAS
        )
        yield from self.kernel.cpa._set_clr(cpu, c, primary=True)
        end = area.addr + area.nr_pages * PAGE
        yield self.env.timeout(
            self.kernel.machine.flush.kernel_range(cpu, area.addr, end)
        )
        alloc.perms = perms

    def perm_free(self, cpu: int, alloc: PermAllocation):
        area = alloc.area
        if alloc.writable is not None:
            yield from self.kernel.vmalloc.vfree(cpu, alloc.writable)
            alloc.writable = None
        yield from self.kernel.vmalloc.free_vm_area(cpu, area)
        if alloc.perms & PERM_X:
            end = area.addr + area.nr_pages * PAGE
            yield self.env.timeout(
                self.kernel.machine.flush.kernel_range(cpu, area.addr, end)
            )
        pages, area.pages = area.pages, []
        yield from self._put_pages(cpu, pages)
        yield self.env.timeout(int(2 * self.slab_ns))  # kvfree(pages), kfree()

    # -- the strategy interface ------------------------------------------------
    def alloc(self, cpu: int, size: int, kind: str):
        """perm_alloc(MODULES_VADDR, MODULES_END, pages, perms)."""
        t0 = self.env.now
        page_cnt = -(-size // PAGE)
        alloc = yield from self.perm_alloc(cpu, page_cnt, perms_of(kind), kind)
        if alloc is None:
            return None
        self.account(size, 0)
        self.metrics.latency("perm_alloc", self.env.now - t0)
        a = alloc.area
        return ExecAlloc(a.addr, size, kind, PAGE_SHIFT, page_cnt * PAGE, handle=alloc)

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        """Plain stores through perm_writable_addr(): the mapping itself
        when writable, else the staging buffer (vmalloc()ed on first use)."""
        alloc = obj.handle
        if not alloc.perms & PERM_W and alloc.writable is None:
            alloc.writable = yield from self.kernel.vmalloc.vmalloc(
                cpu, alloc.area.nr_pages * PAGE, caller="perm_writable_addr"
            )
            if alloc.writable is None:
                # "TODO could fail" in the RFC: it would hand out a NULL
                # buffer to write through. Counted, and the bytes go in
                # place with text_poke() instead, as perm_writable_finish()
                # would have copied them
                self.metrics.inc("mem.exec.staging_failures")
                yield from self.kernel.text_poke.text_poke_copy(
                    cpu, alloc.area.addr, max(1, nbytes)
                )
                return
        yield self.env.timeout(int(self.copy_ns(nbytes, writes)))

    def finalize(self, cpu: int, obj: ExecAlloc):
        """module_map(): perm_writable_finish(), then perm_change() to the
        final permission (only ro_after_init has one to change to)."""
        alloc = obj.handle
        yield from self.perm_writable_finish(cpu, alloc)
        if obj.kind == "module_ro_after_init":
            yield from self.perm_change(cpu, alloc, PERM_R)

    def free(self, cpu: int, obj: ExecAlloc):
        """perm_free()."""
        self.account(-obj.size, 0)
        yield from self.perm_free(cpu, obj.handle)
