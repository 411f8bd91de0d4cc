"""Blocks of pages taken out of the direct map, for the page caches of
``perm_alloc`` (arch/x86/mm/vmalloc.c of the 2020 RFC) and
``unmapped_cache`` (mm/unmapped-alloc.c of the 2023 RFC).

Both take a zeroed block from the page allocator (``alloc_pages(GFP_KERNEL
| __GFP_ZERO, order)``), make each of its pages not present in the direct
map with ``set_direct_map_invalid_noflush()`` (the first call splits the
direct-map large page above it, the others rewrite 4K PTEs) and flush the
block's direct-map range once. A page given back to the page allocator is
mapped again with ``set_direct_map_default_noflush()`` first: not present
-> present needs no flush.

The block is split for the page allocator's bookkeeping (the kernel frees
the pieces of a non-compound block directly), so that pages can go back
one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import field_validator

from simcore.constants import PAGE, PMD_SIZE
from simcore.strategies.params import StrategyParams, param, power_of_two
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.strategies.base import Strategy

# the largest block the page allocator hands out: order MAX_PAGE_ORDER (10)
MAX_BLOCK = PAGE << 10


class BlockParams(StrategyParams):
    """The size of the blocks a cache of unmapped pages refills with; each
    strategy restates the field with its own source."""

    block_size: Size = param(
        PMD_SIZE,
        help="block taken from the page allocator when the cache is empty, a "
        "power of two from 4K to 4M: one flush per block",
        source="PMD_ORDER blocks",
    )

    @field_validator("block_size")
    @classmethod
    def _order(cls, v: int) -> int:
        return power_of_two(v, "block_size", PAGE, MAX_BLOCK)

    @property
    def block_order(self) -> int:
        return (self.block_size // PAGE).bit_length() - 1


def alloc_block(st: Strategy, cpu: int, order: int):
    """A zeroed block of ``2**order`` pages; its first pfn, or None."""
    pa = st.kernel.page_alloc
    pfn = yield from pa.alloc_pages(cpu, order, zero=True)
    if pfn is not None and order:
        pa.buddy.split_page(pfn, order)
    return pfn


def unmap_pages(st: Strategy, cpu: int, pfns):
    """set_direct_map_invalid_noflush() on each page; the caller flushes."""
    cpa, pt = st.kernel.cpa, st.kernel.pagetables
    for pfn in pfns:
        yield from cpa.set_direct_map_invalid_noflush(cpu, pt.page_address(pfn))


def flush_direct_map(st: Strategy, cpu: int, first_pfn: int, nr_pages: int):
    """flush_tlb_kernel_range() over the direct-map alias of the pages."""
    start = st.kernel.pagetables.page_address(first_pfn)
    ns = st.kernel.machine.flush.kernel_range(cpu, start, start + nr_pages * PAGE)
    yield st.env.timeout(ns)


def remap_pages(st: Strategy, cpu: int, pfns):
    """set_direct_map_default_noflush() on each page: present again."""
    cpa, pt = st.kernel.cpa, st.kernel.pagetables
    for pfn in pfns:
        yield from cpa.set_direct_map_default_noflush(cpu, pt.page_address(pfn))


def publish_cache(st: Strategy, free_pages: int) -> None:
    """The pages a cache holds unused (mem.exec.cache_free_pages)."""
    st.metrics.counters["mem.exec.cache_free_pages"] = free_pages
