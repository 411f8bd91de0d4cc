"""mm/page_alloc.c: the zone watermarks and the checks against them.

At boot ``init_per_zone_wmark_min()`` (a postcore initcall) sizes the
reserve the page allocator keeps free and ``__setup_per_zone_wmarks()``
splits it over the zones:

- ``calculate_min_free_kbytes()``: ``min_free_kbytes = int_sqrt(lowmem_kbytes
  * 16)``, clamped to [128, 262144] KiB, ``lowmem_kbytes`` being
  ``nr_free_buffer_pages()`` (the managed pages of the zones up to
  ZONE_NORMAL, less their high watermarks, which are still 0 at that point);
- khugepaged, started at boot when THP is enabled (``always`` or
  ``madvise``: ``kernel.thp``), raises ``min_free_kbytes`` to
  ``set_recommended_min_free_kbytes()`` when that is larger: 11 pageblocks
  per zone up to ZONE_NORMAL (the boot log's "raising min_free_kbytes
  from ... to 67584" with three zones), at most 5 % of lowmem;
- ``__setup_per_zone_wmarks()``: each zone's ``WMARK_MIN`` is its share of
  ``min_free_kbytes`` by managed pages; the distance to ``WMARK_LOW`` and on
  to ``WMARK_HIGH`` is ``max(min / 4, managed * watermark_scale_factor /
  10000)`` (795ae7a0de6b, v4.6: ``vm.watermark_scale_factor``, default 10,
  i.e. 0.1 % of the zone).

The allocator's fast path takes a page only while a zone stays above
``WMARK_LOW``; the slow path wakes kswapd and goes down to ``WMARK_MIN``
(:mod:`simcore.kernel.page_alloc`); kswapd reclaims until ``WMARK_HIGH``
(:mod:`simcore.kernel.vmscan`). ``__zone_watermark_ok()`` is the check:
after taking ``2^order`` pages more than ``mark`` must stay free.

Modelled as one zone per node (the DMA/DMA32/Normal split is not): the
node's minimum is the sum of its zones' shares, and the low/high distance is
computed over the whole node, which matches the kernel's sum over zones
whenever the ``watermark_scale_factor`` term wins (every node of 1 GiB or
more). ``managed_pages`` is the node's size (no memblock reservations are
modelled). Not modelled: ``lowmem_reserve``, ``watermark_boost`` (zones
boosted after fragmenting fallbacks), the highatomic reserve, and
ALLOC_HARDER / ALLOC_OOM allocations that may go below ``WMARK_MIN``.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import isqrt
from typing import TYPE_CHECKING

from simcore.constants import PAGE_SHIFT, PAGE_SIZE
from simcore.kernel.mmzone import PAGEBLOCK_ORDER

if TYPE_CHECKING:
    from simcore.kernel.mmzone import Zone

# calculate_min_free_kbytes(): clamp(new_min_free_kbytes, 128, 262144); the
# ceiling was 65536 before ee8eb9a5fe86 (v5.7), the era knob
# kernel.min_free_kbytes_max
MIN_FREE_KBYTES_FLOOR = 128
MIN_FREE_KBYTES_CEIL = 262144
# mm/page_alloc.c: int watermark_scale_factor = 10 (parts of 10000)
WATERMARK_SCALE_FACTOR = 10
# MIGRATE_PCPTYPES (unmovable, movable, reclaimable), which
# set_recommended_min_free_kbytes() reads with pageblock_nr_pages
MIGRATE_PCPTYPES = 3


def min_free_kbytes(lowmem_pages: int, ceil: int = MIN_FREE_KBYTES_CEIL) -> int:
    """calculate_min_free_kbytes(): ``int_sqrt(lowmem_kbytes * 16)``
    clamped to [128, ``ceil``] KiB (262144 from v5.7, 65536 before)."""
    lowmem_kbytes = lowmem_pages * (PAGE_SIZE >> 10)
    return min(max(isqrt(lowmem_kbytes * 16), MIN_FREE_KBYTES_FLOOR), ceil)


def zone_wmarks(
    managed: int, lowmem_pages: int, kbytes: int, scale_factor: int
) -> tuple[int, int, int]:
    """One zone of __setup_per_zone_wmarks(): (min, low, high) in pages."""
    pages_min = kbytes >> (PAGE_SHIFT - 10)
    wmin = pages_min * managed // lowmem_pages
    # "ensure a minimum size on small systems": mult_frac(managed, scale, 10000)
    gap = max(wmin >> 2, managed * scale_factor // 10000)
    return wmin, wmin + gap, wmin + 2 * gap


def setup_per_zone_wmarks(
    zones: Iterable[Zone],
    scale_factor: int = WATERMARK_SCALE_FACTOR,
    ceil: int = MIN_FREE_KBYTES_CEIL,
    kbytes: int | None = None,
) -> int:
    """init_per_zone_wmark_min(): compute min_free_kbytes from the zones'
    managed pages (or take ``kbytes``, as khugepaged's raise sets it) and
    set every zone's watermarks; returns min_free_kbytes."""
    zones = list(zones)
    lowmem = sum(z.nr_pages for z in zones)
    if kbytes is None:
        kbytes = min_free_kbytes(lowmem, ceil)
    for z in zones:
        z.wmark_min, z.wmark_low, z.wmark_high = zone_wmarks(
            z.nr_pages, lowmem, kbytes, scale_factor
        )
    return kbytes


def recommended_min_free_kbytes(nr_zones: int, lowmem_pages: int) -> int:
    """set_recommended_min_free_kbytes() (mm/khugepaged.c), run when
    khugepaged starts with THP enabled: two free pageblocks per zone up to
    ZONE_NORMAL, plus MIGRATE_PCPTYPES^2 more for fallbacks between
    migratetypes, at most 5 % of lowmem; in KiB."""
    pages = (
        (1 << PAGEBLOCK_ORDER) * nr_zones * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
    )
    return min(pages, lowmem_pages // 20) << (PAGE_SHIFT - 10)


def zone_watermark_ok(
    zone: Zone, order: int, mark: int, free: int | None = None
) -> bool:
    """__zone_watermark_ok()'s free-page test: ``free - (2^order - 1) >
    mark`` (``free`` defaults to the zone's NR_FREE_PAGES;
    should_reclaim_retry() passes free plus reclaimable). Whether a block
    of the order is free is left to the allocation itself: above the
    watermark a missing block is fragmentation, which compaction (not
    modelled) would address."""
    if free is None:
        free = zone.nr_free_pages
    return free - (1 << order) + 1 > mark
