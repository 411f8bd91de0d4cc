"""include/linux/mmzone.h: ``struct zone`` (one per NUMA node here) with
its free lists and per-CPU lists, and the block sizes the buddy allocator
works in. ``zone_batchsize()`` and the ``pcp->high`` ratio come from
mm/page_alloc.c, which sizes a zone's per-CPU lists when it sets it up.

The free lists are worked by :mod:`simcore.kernel.buddy`, the per-CPU
lists by :mod:`simcore.kernel.page_alloc`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from simcore.constants import PAGE_SIZE
from simcore.kernel.buddyinfo import MAX_PAGE_ORDER, NR_ORDERS

if TYPE_CHECKING:
    from simcore.kernel.buddy_seed import _Lazy

MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER
PAGEBLOCK_ORDER = 9  # HUGETLB_PAGE_ORDER on x86-64 (2 MiB)
# setup_pageset() before v5.14: pcp->high = 6 * pcp->batch. Later kernels
# derive high from the zone's low watermark split over the local CPUs (Mel
# Gorman's example: 649 instead of 378 for batch 63) and auto-tune it since
# v6.7; the classic ratio is kept as an approximation.
PCP_HIGH_BATCHES = 6


def zone_batchsize(managed_pages: int) -> int:
    """zone_batchsize(): 0.1 % of the zone or 1 MiB, as 2^n - 1 pages."""
    batch = min(managed_pages >> 10, (1 << 20) // PAGE_SIZE)
    batch //= 4
    batch = max(batch, 1)
    batch = (1 << ((batch + batch // 2).bit_length() - 1)) - 1
    # zone_set_pageset_high_and_batch() uses max(1, zone_batchsize()).
    return max(batch, 1)


class Zone:
    """struct zone (one per node here): free lists, pcp lists, counters."""

    __slots__ = (
        "node",
        "start_pfn",
        "end_pfn",
        "free",
        "runs",
        "nr_free",
        "lazy",
        "lazy_nr",
        "pcp",
        "pcp_hi",
        "pcp_hi_pages",
        "pcp_pindex",
        "batch",
        "high",
        "reserved",
        "nr_free_pages",
        "wmark_min",
        "wmark_low",
        "wmark_high",
    )

    def __init__(self, node: int, start_pfn: int, nr_pages: int) -> None:
        self.node = node
        self.start_pfn = start_pfn
        self.end_pfn = start_pfn + nr_pages
        # free_area[order]: an ordered set of block pfns, head = last item.
        self.free: list[OrderedDict[int, None]] = [
            OrderedDict() for _ in range(NR_ORDERS)
        ]
        # Untouched order-10 memory behind the order-10 list: [lo, hi) pfns.
        self.runs: deque[list[int]] = deque()
        self.nr_free = [0] * NR_ORDERS  # blocks per order, runs/lazy included
        self.lazy: _Lazy | None = None
        self.lazy_nr = [0] * NR_ORDERS
        self.pcp: dict[int, deque[int]] = {}  # per CPU; head = right end
        # v5.14+ high-order per-CPU lists: per CPU, order -> blocks (head =
        # right end), the pages they hold, and free_pcppages_bulk()'s
        # round-robin position
        self.pcp_hi: dict[int, dict[int, deque[int]]] = {}
        self.pcp_hi_pages: dict[int, int] = {}
        self.pcp_pindex: dict[int, int] = {}
        self.batch = zone_batchsize(nr_pages)
        self.high = PCP_HIGH_BATCHES * self.batch
        self.reserved = 0  # pages in use from the start, never freed here
        # zone_page_state(zone, NR_FREE_PAGES): pages in the free lists (not
        # on per-CPU lists), kept by the buddy allocator as it moves blocks
        self.nr_free_pages = 0
        # zone->_watermark[WMARK_MIN/LOW/HIGH] in pages, set by
        # setup_per_zone_wmarks() (simcore.kernel.watermarks); 0 until then
        self.wmark_min = self.wmark_low = self.wmark_high = 0

    @property
    def nr_pages(self) -> int:
        return self.end_pfn - self.start_pfn

    def free_pages(self) -> int:
        return sum(c << k for k, c in enumerate(self.nr_free))
