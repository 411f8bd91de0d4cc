"""``unmapped_cache``: module_alloc() pages from a cache of pages already
removed from the direct map (``__GFP_UNMAPPED``).

Models Mike Rapoport's "Prototype for direct map awareness in page
allocator" (RFC, 20230308094106.227365-1-rppt@kernel.org), patches 1, 3
and 4:

- mm/unmapped-alloc.c: a buddy allocator of its own (``free_area[order]``,
  orders 0..MAX_ORDER-1) under one spinlock. ``unmapped_pages_alloc()``
  tries ``__rmqueue_smallest()``; on a miss it takes a zeroed
  ``PMD_ORDER`` block from the page allocator (or the highest order it can
  get), removes it from the direct map (``set_direct_map_invalid_noflush()``
  per page, one ``flush_tlb_kernel_range()``), adds it to the cache
  (``__free_one_page(cache_refill)``) and retries. The posted loop unmaps
  only the requested ``1 << order`` pages of the block (a FIXME-laden
  prototype); the model unmaps the whole block, as its commit message says;
- freed pages whose pageblock is marked unmapped come back to the cache,
  merged with their buddies, not to the zone;
- ``x86::module_alloc()`` passes ``GFP_KERNEL | __GFP_UNMAPPED``, and
  ``vm_area_alloc_pages()`` skips the bulk allocator for it: one
  ``__alloc_pages()`` per page, each served from the cache;
- the shrinker maps cached blocks back (``set_direct_map_default_noflush()``,
  no flush) and frees them: :meth:`UnmappedCache.shrink`, for memory
  pressure.

Everything else is ``module_alloc``: ``set_memory_rox()`` on load (the
direct-map alias is already 4K, so nothing splits, but the alias change
still flushes every CPU), ``VM_FLUSH_RESET_PERMS`` on free. That reset
maps each page back into the direct map before the page returns to the
cache, as the experimental patch leaves it: a cached page stays out of the
direct map only until its first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SIZE
from simcore.kernel.vmalloc import VM_ALLOC, VM_FLUSH_RESET_PERMS, VmArea
from simcore.kernel.vmscan import Shrinker
from simcore.strategies.base import ExecAlloc
from simcore.strategies.module_alloc import ModuleAlloc
from simcore.strategies.params import param
from simcore.strategies.unmapped_blocks import (
    BlockParams,
    alloc_block,
    flush_direct_map,
    publish_cache,
    remap_pages,
    unmap_pages,
)
from simcore.strategies.vmalloc_huge_modules import follow_mapping
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# include/linux/mmzone.h before 6.4: orders 0 .. MAX_ORDER - 1
MAX_ORDER = 11


class CacheParams(BlockParams):
    block_size: Size = param(
        PMD_SIZE,
        help="block the cache takes from the page allocator on a miss (the "
        "largest it can get, down to the request, if none is free), a power "
        "of two from 4K to 4M: unmapped whole, one flush per block",
        source="mm/unmapped-alloc.c unmapped_pages_alloc(): PMD_ORDER blocks "
        "(20230308094106.227365-1-rppt@kernel.org)",
    )


class UnmappedCache(ModuleAlloc):
    name = "unmapped_cache"
    core_layout = False  # modelled per type, following CPA_COLLAPSE per object
    first_release = None
    release_source = (
        "__GFP_UNMAPPED RFC (20230308094106.227365-1-rppt@kernel.org), never merged"
    )
    summary = "module_alloc() from a cache of direct-map-removed pages"
    models = "__GFP_UNMAPPED RFC, Mar 2023 (20230308094106.227365-1-rppt@kernel.org)"
    Params = CacheParams
    params: CacheParams

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        pa = kernel.page_alloc
        self.lock = kernel.machine.spinlock("unmapped_free_area_lock")
        # free_area[order]: pfn -> None in list order, the head last
        self.free_area: list[dict[int, None]] = [{} for _ in range(MAX_ORDER)]
        self.nr_free_pages = 0
        # one free-list step (list move, buddy check): what it costs in the
        # zone's free lists
        self.step_ns = pa.locked_ns
        self.page_ns = pa.page_ns
        self.slab_ns = kernel.profile.kernel_costs.slab_alloc_ns.value
        # unmapped_alloc_shrinker: the cached free pages, freed by shrink()
        kernel.shrinkers.register(
            Shrinker("unmapped_alloc", lambda: self.nr_free_pages, self.shrink)
        )

    # -- mm/unmapped-alloc.c -------------------------------------------------
    def _add(self, pfn: int, order: int) -> None:
        self.free_area[order][pfn] = None
        self.nr_free_pages += 1 << order

    def _del(self, pfn: int, order: int) -> None:
        del self.free_area[order][pfn]
        self.nr_free_pages -= 1 << order

    def _free_one_page(self, pfn: int, order: int) -> int:
        """__free_one_page() (lock held): merge with free buddies; steps."""
        steps = 1
        while order < MAX_ORDER - 1:
            buddy = pfn ^ (1 << order)
            if buddy not in self.free_area[order]:
                break
            self._del(buddy, order)
            pfn &= buddy
            order += 1
            steps += 1
        self._add(pfn, order)
        return steps

    def _rmqueue_smallest(self, order: int) -> tuple[int | None, int]:
        """__rmqueue_smallest() (lock held): (pfn or None, steps)."""
        for cur in range(order, MAX_ORDER):
            if not self.free_area[cur]:
                continue
            pfn = next(reversed(self.free_area[cur]))  # list_first_entry()
            self._del(pfn, cur)
            while cur > order:  # expand()
                cur -= 1
                self._add(pfn + (1 << cur), cur)
            return pfn, 1 + cur - order
        return None, MAX_ORDER - order

    def _locked(self, cpu: int, step, *args):
        extra = yield from self.lock.take(cpu)
        result, steps = step(*args)
        yield self.env.timeout(int(steps * self.step_ns + extra))
        self.lock.release(cpu)
        return result

    def unmapped_pages_alloc(self, cpu: int, order: int = 0):
        """A pfn of ``2**order`` unmapped pages, or None."""
        pfn = yield from self._locked(cpu, self._rmqueue_smallest, order)
        if pfn is not None:
            return pfn
        block = None
        for cache_order in range(self.params.block_order, order - 1, -1):
            block = yield from alloc_block(self, cpu, cache_order)
            if block is not None:
                break
        if block is None:
            return None
        n = 1 << cache_order
        yield from unmap_pages(self, cpu, range(block, block + n))
        yield from flush_direct_map(self, cpu, block, n)
        yield from self._locked(
            cpu, lambda: (None, self._free_one_page(block, cache_order))
        )
        self.account(0, n * PAGE)
        self.metrics.inc("mem.exec.cache_refills")
        pfn = yield from self._locked(cpu, self._rmqueue_smallest, order)
        publish_cache(self, self.nr_free_pages)
        return pfn

    def unmapped_pages_free(self, cpu: int, pfn: int):
        """__free_pages() of a page from an unmapped pageblock."""
        yield from self._locked(cpu, lambda: (None, self._free_one_page(pfn, 0)))

    def shrink(self, cpu: int, nr_to_scan: int):
        """unmapped_alloc_scan_objects(): free blocks, smallest order first,
        mapped back and returned to the page allocator. Returns pages."""
        freed = 0
        for order in range(MAX_ORDER):
            while freed < nr_to_scan:
                extra = yield from self.lock.take(cpu)
                pfn = next(reversed(self.free_area[order]), None)
                if pfn is not None:
                    self._del(pfn, order)
                yield self.env.timeout(int(self.step_ns + extra))
                self.lock.release(cpu)
                if pfn is None:
                    break
                n = 1 << order
                pages = list(range(pfn, pfn + n))
                yield from remap_pages(self, cpu, pages)
                yield from self.kernel.page_alloc.free_pages_batch(cpu, pages)
                self.account(0, -n * PAGE)
                freed += n
        publish_cache(self, self.nr_free_pages)
        return freed

    # -- module_alloc() with __GFP_UNMAPPED -------------------------------------
    def alloc(self, cpu: int, size: int, kind: str):
        """__vmalloc_node_range(): the area, then one page at a time from
        the cache (no bulk allocation for __GFP_UNMAPPED), then the PTEs."""
        vm = self.kernel.vmalloc
        flags = VM_ALLOC | VM_FLUSH_RESET_PERMS
        nr = -(-size // PAGE)
        area = yield from vm.get_vm_area(cpu, nr * PAGE, flags=flags, range_="modules")
        if area is None:
            return None
        area.caller = kind
        yield self.env.timeout(int(self.slab_ns))  # kvmalloc_array() of pages[]
        for _ in range(nr):
            pfn = yield from self.unmapped_pages_alloc(cpu)
            yield self.env.timeout(int(self.page_ns))  # __alloc_pages() around it
            if pfn is None:
                break
            area.pages.append(pfn)
        area.nr_pages = len(area.pages)
        ok = area.nr_pages == nr
        if ok:
            ok = yield from self.kernel.pagetables.vmap_pages_range(
                cpu, area.addr, area.pages
            )
        if not ok:
            yield from self._vfree(cpu, area, reset=False)
            return None
        self.account(size, 0)
        return ExecAlloc(area.addr, size, kind, PAGE_SHIFT, nr * PAGE, handle=area)

    def _vfree(self, cpu: int, area: VmArea, *, reset: bool):
        """vfree(): remove_vm_area(), vm_reset_perms() for
        VM_FLUSH_RESET_PERMS, then every page back to the cache."""
        yield from self.kernel.vmalloc.free_vm_area(cpu, area)
        if reset and area.pages:
            yield from self.kernel.vmalloc.vm_reset_perms(cpu, area)
        pages, area.pages = area.pages, []
        for pfn in pages:
            yield from self.unmapped_pages_free(cpu, pfn)
        publish_cache(self, self.nr_free_pages)

    def finalize(self, cpu: int, obj: ExecAlloc):
        """module_alloc()'s protection; cached blocks are physically
        contiguous, so CPA_COLLAPSE (6.15+) may make the text 2M-mapped."""
        yield from super().finalize(cpu, obj)
        follow_mapping(self.kernel, obj)

    def free(self, cpu: int, obj: ExecAlloc):
        self.account(-obj.size, 0)
        yield from self._vfree(cpu, obj.handle, reset=True)
        obj.remap(PAGE_SHIFT)
