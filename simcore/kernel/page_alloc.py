"""mm/page_alloc.c: the buddy allocator, per NUMA node, with per-CPU lists.

Two layers. :class:`BuddyAllocator` is the data structure alone (no time,
no SimPy), so property tests can drive it directly; :class:`PageAlloc`
wraps it in SimPy generators that take ``zone->lock`` and charge the
profile's ``kernel_costs``.

Kernel functions modelled, with the same steps:

- ``__rmqueue_smallest()``: take the head block of the smallest non-empty
  free list of order >= the request; ``expand()`` keeps the lower half and
  puts each upper half on the free list one order down (at its head);
- ``__free_one_page()``: while the buddy (``pfn ^ (1 << order)``) is a free
  block of the same order, unlink it and merge, up to ``MAX_PAGE_ORDER``
  (10); the result goes to the head of its list, or to the tail when
  ``buddy_merge_likely()`` sees the next-order buddy free;
- per-CPU page lists for order 0 (``rmqueue_pcplist()`` /
  ``free_unref_page()``): lockless for the owning CPU; an empty list is
  refilled with ``pcp->batch`` pages by ``rmqueue_bulk()`` and a list that
  reaches ``pcp->high`` gives ``batch`` of its oldest pages back through
  ``free_pcppages_bulk()``, both under ``zone->lock``;
- ``alloc_pages_bulk()``: order-0 pages from this CPU's list of the local
  node only; when that node has none, one page from the ordinary path
  (which may fall back to other nodes). vmalloc's ``vm_area_alloc_pages()``
  calls it for at most :data:`BULK_CHUNK` pages at a time;
- ``split_page()``: an order-k block becomes 2^k order-0 pages that are
  freed one by one later; ``drain_all_pages()``.

Boot state. ``memblock_free_all()`` hands memory to the buddy lists with
``FPI_TO_TAIL`` (since v5.10), so the lists start in ascending address order
and the lowest block is taken first. Three starting states:

- fresh (``kernel.fragmentation: 0``): every node is free, in order-10
  blocks; the boot kernel's own few hundred MiB are not modelled;
- ``kernel.fragmentation: f`` (estimate, see :data:`FRAG_SPLIT_P`): a share
  f of the node's 4 MiB regions, picked by a seeded hash, has been broken
  up by earlier use: within such a region the buddy tree is cut at random
  down to order 0, about half of the pieces are in use, and each 2 MiB half
  keeps at least one used piece, so a fully broken node has no free order-9
  or order-10 block. Free memory is then about ``1 - f/2`` of the node;
- ``kernel.buddyinfo``: a real ``/proc/buddyinfo`` capture (counts only,
  no addresses): the order-10 blocks are laid out as one run at the top of
  the node and the smaller blocks packed from the bottom so that no two
  free buddies sit side by side (they would have merged).

Memory of the model follows the number of free *blocks* and of pages handed
out, never RAM size: untouched order-10 memory is kept as address runs, and
a fragmented node materialises its broken regions lazily, one 4 MiB region
at a time, when an allocation first reaches them (their blocks are at the
tail of the free lists, so nothing earlier is skipped).

Not modelled: migratetypes and pageblock stealing, watermarks, reclaim and
compaction (an allocation fails only when no free block of the order exists
on any allowed node), high-order pcp lists (v5.15+), the DMA/DMA32/Normal
split (one zone per node; a capture's DMA, DMA32 and Normal rows are summed,
its Movable rows ignored), memory holes.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simcore.constants import PAGE_SHIFT, PAGE_SIZE
from simcore.errors import CaptureError, SimulationError
from simcore.kernel.buddyinfo import MAX_PAGE_ORDER, NR_ORDERS, load_buddyinfo

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.profile import HwProfile

MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER
PAGEBLOCK_ORDER = 9  # HUGETLB_PAGE_ORDER on x86-64 (2 MiB)

# mm/vmalloc.c vm_area_alloc_pages() asks alloc_pages_bulk for at most 100
# pages per call (hard-coded, to bound the time spent with preemption off).
BULK_CHUNK = 100
# Bulk allocation costs 0.41 of the per-page path: __alloc_pages 35.60 % of
# the profile became __alloc_pages_bulk 14.48 % in 5c1f4e690eec
# (20210516202056.2120-3-urezki@gmail.com; calibration.md A3).
BULK_PAGE_FACTOR = 14.48 / 35.60
# Share of the bulk path's per-page cost spent moving pages between the buddy
# lists under zone->lock (rmqueue_bulk / free_pcppages_bulk), the rest being
# prep_new_page() and the per-CPU list work. Estimate: no published split.
ZONE_LOCKED_SHARE = 0.5
# setup_pageset() before v5.14: pcp->high = 6 * pcp->batch. Later kernels
# derive high from the zone's low watermark split over the local CPUs (Mel
# Gorman's example: 649 instead of 378 for batch 63) and auto-tune it since
# v6.7; the classic ratio is kept as an approximation.
PCP_HIGH_BATCHES = 6

# Fragmentation model (estimate): a broken 4 MiB region is always split to
# order 8, then each block is split further with this probability, down to
# order 0; each leaf is in use with probability FRAG_USED_P. With 0.75 small
# free blocks outnumber large ones, 1.7 to 1.9 times per order down.
FRAG_SPLIT_P = 0.75
FRAG_USED_P = 0.5
FRAG_PATTERNS = 64  # distinct broken-region layouts drawn per node

_M64 = (1 << 64) - 1


def zone_batchsize(managed_pages: int) -> int:
    """zone_batchsize(): 0.1 % of the zone or 1 MiB, as 2^n - 1 pages."""
    batch = min(managed_pages >> 10, (1 << 20) // PAGE_SIZE)
    batch //= 4
    batch = max(batch, 1)
    batch = (1 << ((batch + batch // 2).bit_length() - 1)) - 1
    # zone_set_pageset_high_and_batch() uses max(1, zone_batchsize()).
    return max(batch, 1)


def node_pages_from_profile(profile: HwProfile) -> list[int]:
    """Pages per NUMA node: ``memory.dram_bytes`` split evenly over the
    nodes, each rounded down to whole order-10 blocks (4 MiB)."""
    t = profile.topology
    nodes = max(1, t.sockets.value * t.numa_nodes_per_socket.value)
    per_node = profile.memory.dram_bytes.value // nodes // PAGE_SIZE
    per_node -= per_node % MAX_ORDER_NR_PAGES
    if per_node <= 0:
        raise SimulationError(
            f"memory.dram_bytes = {profile.memory.dram_bytes.value} leaves no "
            f"4 MiB block per NUMA node ({nodes} nodes)"
        )
    return [per_node] * nodes


def _splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _splitmix64_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _threshold(f: float) -> int:
    """Hash values below this mark a broken region (probability f)."""
    return min(int(f * 2.0**64), _M64 + 1)


def _coalesce(free: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Maximal free blocks of a set of free (offset, order) pieces."""
    by_order: list[set[int]] = [set() for _ in range(NR_ORDERS)]
    for off, order in free:
        while order < MAX_PAGE_ORDER and (off ^ (1 << order)) in by_order[order]:
            by_order[order].discard(off ^ (1 << order))
            off &= ~(1 << order)
            order += 1
        by_order[order].add(off)
    return sorted((off, k) for k in range(NR_ORDERS) for off in by_order[k])


def _broken_region(rng: np.random.Generator) -> list[tuple[int, int]]:
    """Free blocks (offset, order) of one broken 4 MiB region."""
    free: list[tuple[int, int]] = []
    quarter = PAGEBLOCK_ORDER - 1
    for half in (0, 1 << PAGEBLOCK_ORDER):
        leaves: list[tuple[int, int]] = []
        stack = [(half, quarter), (half + (1 << quarter), quarter)]
        while stack:
            off, order = stack.pop()
            if order > 0 and rng.random() < FRAG_SPLIT_P:
                stack.append((off + (1 << (order - 1)), order - 1))
                stack.append((off, order - 1))
            else:
                leaves.append((off, order))
        used = rng.random(len(leaves)) < FRAG_USED_P
        if not used.any():
            used[int(rng.integers(len(leaves)))] = True
        free += [leaf for leaf, u in zip(leaves, used, strict=True) if not u]
    return _coalesce(free)


class _Lazy:
    """Regions of a fragmented node not yet looked at, in address order.

    Region r is broken when a keyed hash of r falls below f; its layout is
    one of the pre-drawn patterns, chosen by a second hash. Nothing is
    stored per region: the hashes are recomputed when a region is reached.
    """

    def __init__(self, key: int, f: float, patterns: list, nr_regions: int):
        self.key = key
        self.threshold = _threshold(f)
        self.patterns = patterns  # [(blocks, counts per order)]
        self.nr_regions = nr_regions
        self.cursor = 0

    def classify(self, r: int) -> int | None:
        """Pattern index of region r, or None when it is untouched."""
        h = _splitmix64((self.key + r) & _M64)
        if h >= self.threshold:
            return None
        return _splitmix64(h) % len(self.patterns)

    def totals(self) -> list[int]:
        """Free blocks per order over all regions (vectorised, chunked)."""
        counts = np.array([c for _, c in self.patterns], dtype=np.int64)
        out = np.zeros(NR_ORDERS, dtype=np.int64)
        chunk = 1 << 16
        for lo in range(0, self.nr_regions, chunk):
            r = np.arange(lo, min(lo + chunk, self.nr_regions), dtype=np.uint64)
            h = _splitmix64_np(r + np.uint64(self.key))
            if self.threshold > _M64:
                broken = np.ones(len(r), dtype=bool)
            else:
                broken = h < np.uint64(self.threshold)
            pat = _splitmix64_np(h[broken]) % np.uint64(len(self.patterns))
            per_pattern = np.bincount(pat.astype(np.int64), minlength=len(counts))
            out += per_pattern @ counts
            out[MAX_PAGE_ORDER] += int((~broken).sum())
        return [int(x) for x in out]


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
        "batch",
        "high",
        "reserved",
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
        self.batch = zone_batchsize(nr_pages)
        self.high = PCP_HIGH_BATCHES * self.batch
        self.reserved = 0  # pages in use from the start, never freed here

    @property
    def nr_pages(self) -> int:
        return self.end_pfn - self.start_pfn

    def free_pages(self) -> int:
        return sum(c << k for k, c in enumerate(self.nr_free))


class BuddyAllocator:
    """The buddy allocator's state and operations, without time.

    ``node_pages`` gives each node's size in pages (a multiple of 1024);
    node n covers pfns ``[sum(node_pages[:n]), sum(node_pages[:n+1]))``.
    ``buddyinfo`` (per node, 11 counts) or ``fragmentation`` (0..1, with
    ``rng``) pick the starting state; the default is all memory free.

    The ``alloc_*``/``free_*`` methods are whole kernel calls; the
    ``pcp_*``, ``rmqueue`` and ``free_one`` steps are what they are made
    of, for the timed front end to call with ``zone->lock`` held where the
    kernel holds it.
    """

    def __init__(
        self,
        node_pages: Sequence[int],
        *,
        fragmentation: float = 0.0,
        rng: np.random.Generator | None = None,
        buddyinfo: Sequence[Sequence[int]] | None = None,
        buddyinfo_file: str = "<buddyinfo>",
    ) -> None:
        if not node_pages:
            raise SimulationError("a buddy allocator needs at least one node")
        if not 0.0 <= fragmentation <= 1.0:
            raise SimulationError(f"fragmentation {fragmentation} outside 0..1")
        self.zones: list[Zone] = []
        start = 0
        for n, pages in enumerate(node_pages):
            if pages <= 0 or pages % MAX_ORDER_NR_PAGES:
                raise SimulationError(
                    f"node {n}: {pages} pages is not a positive multiple of "
                    f"{MAX_ORDER_NR_PAGES}"
                )
            self.zones.append(Zone(n, start, pages))
            start += pages
        self.total_pages = start
        # The zonelists, built once as build_zonelists() does at boot.
        n = len(self.zones)
        self._zonelists = [
            sorted(range(n), key=lambda x, node=node: (abs(x - node), x))
            for node in range(n)
        ]
        self.nr_free_pages = 0  # in the buddy lists (NR_FREE_PAGES)
        self.nr_pcp_pages = 0
        self.nr_allocated_pages = 0
        # Blocks handed out whole (pfn -> order) and split_page()d blocks
        # (head pfn -> [order, bitmask of pages not yet freed]).
        self.allocated: dict[int, int] = {}
        # Keyed by (head, order): the freed front pages of a split block can
        # merge, be handed out and be split again (same head, lower order)
        # while the block's other pages are still in use.
        self.split: dict[tuple[int, int], list[int]] = {}
        if buddyinfo is not None:
            if len(buddyinfo) != len(self.zones):
                raise CaptureError(
                    f"the capture has {len(buddyinfo)} NUMA node(s), the "
                    f"machine {len(self.zones)}",
                    file=buddyinfo_file,
                    expected="a capture from a machine with as many nodes "
                    "(topology.sockets x numa_nodes_per_socket)",
                )
            for zone, counts in zip(self.zones, buddyinfo, strict=True):
                self._seed_counts(zone, list(counts), buddyinfo_file)
        elif fragmentation > 0.0:
            if rng is None:
                raise SimulationError("fragmentation needs a random generator")
            for zone in self.zones:
                self._seed_fragmented(zone, fragmentation, rng)
        else:
            for zone in self.zones:
                zone.runs.append([zone.start_pfn, zone.end_pfn])
                zone.nr_free[MAX_PAGE_ORDER] = zone.nr_pages >> MAX_PAGE_ORDER
        for zone in self.zones:
            free = zone.free_pages()
            zone.reserved = zone.nr_pages - free
            self.nr_free_pages += free
        self.nr_reserved_pages = sum(z.reserved for z in self.zones)
        self._initial = [list(z.nr_free) for z in self.zones]

    # -- starting states -----------------------------------------------------
    def _seed_fragmented(self, zone: Zone, f: float, rng: np.random.Generator) -> None:
        patterns = []
        for _ in range(FRAG_PATTERNS):
            blocks = _broken_region(rng)
            counts = [0] * NR_ORDERS
            for _, k in blocks:
                counts[k] += 1
            patterns.append((blocks, counts))
        key = int(rng.integers(0, 1 << 63))
        lazy = _Lazy(key, f, patterns, zone.nr_pages >> MAX_PAGE_ORDER)
        zone.lazy = lazy
        zone.lazy_nr = lazy.totals()
        zone.nr_free = list(zone.lazy_nr)

    def _seed_counts(self, zone: Zone, counts: list[int], file: str) -> None:
        """Lay out a capture's free blocks so that none could merge."""
        if len(counts) != NR_ORDERS or any(c < 0 for c in counts):
            raise CaptureError(
                f"node {zone.node}: need {NR_ORDERS} non-negative counts",
                file=file,
            )
        regions = zone.nr_pages >> MAX_PAGE_ORDER
        top = counts[MAX_PAGE_ORDER]
        need = sum(c << k for k, c in enumerate(counts))
        if top > regions:
            raise CaptureError(
                f"node {zone.node}: {top} free 4 MiB blocks do not fit in "
                f"{zone.nr_pages << PAGE_SHIFT >> 20} MiB",
                file=file,
                expected=f"machine.memory.dram_bytes of at least "
                f"{need * len(self.zones) << PAGE_SHIFT} bytes",
            )
        # Holes are aligned blocks not yet given out. A constrained hole must
        # keep at least one used page: it is the buddy of a free block of its
        # own order, or a whole region (which must not become order-10 free).
        uncon: list[list[int]] = [[] for _ in range(NR_ORDERS)]
        con: list[list[int]] = [[] for _ in range(NR_ORDERS)]
        opened = 0
        limit = regions - top
        blocks: list[tuple[int, int]] = []
        for k in range(MAX_PAGE_ORDER - 1, -1, -1):
            for _ in range(counts[k]):
                if uncon[k]:
                    blocks.append((uncon[k].pop(), k))
                    continue
                for j in range(k + 1, NR_ORDERS):
                    if con[j] or uncon[j]:
                        pfn = con[j].pop() if con[j] else uncon[j].pop()
                        break
                else:
                    if opened == limit:
                        raise CaptureError(
                            f"node {zone.node}: the free blocks of the capture "
                            f"need more than {zone.nr_pages << PAGE_SHIFT >> 20} "
                            "MiB once laid out without mergeable buddies",
                            file=file,
                            expected=f"machine.memory.dram_bytes of at least "
                            f"{2 * need * len(self.zones) << PAGE_SHIFT} bytes",
                        )
                    j = MAX_PAGE_ORDER
                    pfn = zone.start_pfn + (opened << MAX_PAGE_ORDER)
                    opened += 1
                for level in range(j - 1, k, -1):
                    uncon[level].append(pfn + (1 << level))
                con[k].append(pfn + (1 << k))
                blocks.append((pfn, k))
        # memblock_free_all(): ascending from the head of each list.
        for pfn, k in sorted(blocks, reverse=True):
            zone.free[k][pfn] = None
            zone.nr_free[k] += 1
        if top:
            zone.runs.append([zone.end_pfn - (top << MAX_PAGE_ORDER), zone.end_pfn])
            zone.nr_free[MAX_PAGE_ORDER] = top

    def _materialize(self, zone: Zone) -> None:
        """Bring the next untouched region of a fragmented node to the lists."""
        lazy = zone.lazy
        if lazy is None or lazy.cursor >= lazy.nr_regions:
            raise SimulationError(f"node {zone.node}: free lists out of step")
        r = lazy.cursor
        lazy.cursor += 1
        base = zone.start_pfn + (r << MAX_PAGE_ORDER)
        pat = lazy.classify(r)
        if pat is None:
            if zone.runs and zone.runs[-1][1] == base:
                zone.runs[-1][1] += MAX_ORDER_NR_PAGES
            else:
                zone.runs.append([base, base + MAX_ORDER_NR_PAGES])
            zone.lazy_nr[MAX_PAGE_ORDER] -= 1
            return
        blocks, counts = lazy.patterns[pat]
        for off, k in blocks:  # ascending, each behind the previous one
            fl = zone.free[k]
            fl[base + off] = None
            fl.move_to_end(base + off, last=False)
        for k, c in enumerate(counts):
            zone.lazy_nr[k] -= c

    # -- free-list primitives --------------------------------------------------
    def _pop(self, zone: Zone, order: int) -> int:
        """Take the head block of free_area[order] (nr_free[order] > 0)."""
        fl = zone.free[order]
        while True:
            if fl:
                pfn = fl.popitem()[0]
                break
            if order == MAX_PAGE_ORDER and zone.runs:
                run = zone.runs[0]
                pfn = run[0]
                run[0] += MAX_ORDER_NR_PAGES
                if run[0] == run[1]:
                    zone.runs.popleft()
                break
            self._materialize(zone)
        zone.nr_free[order] -= 1
        self.nr_free_pages -= 1 << order
        return pfn

    def _add(self, zone: Zone, pfn: int, order: int, *, tail: bool) -> None:
        fl = zone.free[order]
        fl[pfn] = None
        if tail:
            fl.move_to_end(pfn, last=False)
        zone.nr_free[order] += 1
        self.nr_free_pages += 1 << order

    def rmqueue(self, node: int, order: int) -> tuple[int, int] | None:
        """__rmqueue_smallest() + expand(); caller holds zone->lock.

        Returns (pfn, order the block was taken from), or None.
        """
        zone = self.zones[node]
        for current in range(order, NR_ORDERS):
            if zone.nr_free[current]:
                pfn = self._pop(zone, current)
                high = current
                while high > order:
                    high -= 1
                    self._add(zone, pfn + (1 << high), high, tail=False)
                return pfn, current
        return None

    def free_one(self, pfn: int, order: int) -> int:
        """__free_one_page(); caller holds zone->lock. Returns merges done."""
        zone = self.zone_of(pfn)
        merges = 0
        while order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            fl = zone.free[order]
            if buddy not in fl:
                break
            del fl[buddy]
            zone.nr_free[order] -= 1
            self.nr_free_pages -= 1 << order
            pfn &= ~(1 << order)
            order += 1
            merges += 1
        tail = False
        if order < MAX_PAGE_ORDER - 1:  # buddy_merge_likely()
            higher = pfn & ~(1 << order)
            tail = (higher ^ (1 << (order + 1))) in zone.free[order + 1]
        self._add(zone, pfn, order, tail=tail)
        return merges

    # -- per-CPU lists ---------------------------------------------------------
    def _pcp(self, zone: Zone, cpu: int) -> deque[int]:
        pcp = zone.pcp.get(cpu)
        if pcp is None:
            pcp = zone.pcp[cpu] = deque()
        return pcp

    def pcp_pop(self, node: int, cpu: int) -> int | None:
        """The lockless part of rmqueue_pcplist(): head of this CPU's list."""
        pcp = self._pcp(self.zones[node], cpu)
        if not pcp:
            return None
        pfn = pcp.pop()
        self.nr_pcp_pages -= 1
        self.prep_new_page(pfn, 0)
        return pfn

    def pcp_refill(self, node: int, cpu: int) -> int:
        """rmqueue_bulk(zone, 0, pcp->batch): caller holds zone->lock.

        Each page is added at the list's tail, so the first one taken from
        the buddy is the next handed out. Returns pages moved.
        """
        zone = self.zones[node]
        pcp = self._pcp(zone, cpu)
        moved = 0
        for _ in range(zone.batch):
            got = self.rmqueue(node, 0)
            if got is None:
                break
            pcp.appendleft(got[0])
            moved += 1
        self.nr_pcp_pages += moved
        return moved

    def pcp_push(self, pfn: int, cpu: int) -> bool:
        """free_unref_page() for an order-0 page: to the head of this CPU's
        list for the page's zone. True when the list reached pcp->high."""
        self.free_pages_prepare(pfn, 0)
        zone = self.zone_of(pfn)
        pcp = self._pcp(zone, cpu)
        pcp.append(pfn)
        self.nr_pcp_pages += 1
        return len(pcp) >= zone.high

    def pcp_free_bulk(self, node: int, cpu: int, count: int | None = None) -> int:
        """free_pcppages_bulk(): the oldest ``count`` pages (default
        pcp->batch) back to the buddy; caller holds zone->lock. Returns the
        number of blocks moved plus merges done (the list work)."""
        zone = self.zones[node]
        pcp = self._pcp(zone, cpu)
        n = min(len(pcp), zone.batch if count is None else count)
        work = 0
        for _ in range(n):
            work += 1 + self.free_one(pcp.popleft(), 0)
        self.nr_pcp_pages -= n
        return work

    # -- whole calls (no time) ---------------------------------------------------
    def alloc_pages(
        self, node: int, order: int, *, cpu: int = 0, thisnode: bool = False
    ) -> int | None:
        """__alloc_pages(): local node first, then the others unless
        ``thisnode`` (__GFP_THISNODE). None when no block is free."""
        self.check_order(order)
        for n in self.fallback_nodes(node, thisnode):
            if order == 0:
                pfn = self.pcp_pop(n, cpu)
                if pfn is None and self.pcp_refill(n, cpu):
                    pfn = self.pcp_pop(n, cpu)
                if pfn is not None:
                    return pfn
            else:
                got = self.rmqueue(n, order)
                if got is not None:
                    self.prep_new_page(got[0], order)
                    return got[0]
        return None

    def alloc_pages_bulk(self, node: int, nr_pages: int, *, cpu: int = 0) -> list[int]:
        """alloc_pages_bulk(): up to ``nr_pages`` order-0 pages."""
        out: list[int] = []
        while len(out) < nr_pages:
            pfn = self.pcp_pop(node, cpu)
            if pfn is None:
                if not self.pcp_refill(node, cpu):
                    break
                continue
            out.append(pfn)
        if not out and nr_pages > 0:
            pfn = self.alloc_pages(node, 0, cpu=cpu)
            if pfn is not None:
                out.append(pfn)
        return out

    def free_pages(self, pfn: int, order: int, *, cpu: int = 0) -> None:
        """__free_pages(): order 0 through this CPU's list, larger blocks
        straight to the buddy (__free_pages_ok)."""
        self.check_order(order)
        if order == 0:
            if self.pcp_push(pfn, cpu):
                self.pcp_free_bulk(self.zone_of(pfn).node, cpu)
        else:
            self.free_pages_prepare(pfn, order)
            self.free_one(pfn, order)

    def split_page(self, pfn: int, order: int) -> None:
        """split_page(): a block handed out whole becomes 2^order pages."""
        if self.allocated.get(pfn) != order:
            raise SimulationError(
                f"split_page of pfn {pfn:#x} order {order}: not an allocated "
                "block of that order"
            )
        if order == 0:
            return
        del self.allocated[pfn]
        self.split[pfn, order] = [order, (1 << (1 << order)) - 1]

    def drain_pages(self) -> None:
        """drain_all_pages(): empty every CPU's list back to the buddy."""
        for zone in self.zones:
            for cpu, pcp in zone.pcp.items():
                if pcp:
                    self.pcp_free_bulk(zone.node, cpu, len(pcp))

    # -- bookkeeping -------------------------------------------------------------
    def fallback_nodes(self, node: int, thisnode: bool = False) -> list[int]:
        """The zonelist order: the preferred node, then the others by
        increasing node distance (taken as the distance between node ids)."""
        if thisnode:
            return [node]
        return self._zonelists[node]

    def zone_of(self, pfn: int) -> Zone:
        for zone in self.zones:
            if zone.start_pfn <= pfn < zone.end_pfn:
                return zone
        raise SimulationError(f"pfn {pfn:#x} is outside RAM")

    def check_order(self, order: int) -> None:
        if not 0 <= order <= MAX_PAGE_ORDER:
            raise SimulationError(f"page order {order} outside 0..{MAX_PAGE_ORDER}")

    def prep_new_page(self, pfn: int, order: int) -> None:
        """Record a block as handed out (prep_new_page() sets its refcount)."""
        self.allocated[pfn] = order
        self.nr_allocated_pages += 1 << order

    def free_pages_prepare(self, pfn: int, order: int) -> None:
        """free_pages_prepare()'s "Bad page state" check: only pages that
        were handed out, and not freed since, may come back."""
        if self.allocated.get(pfn) == order:
            del self.allocated[pfn]
            self.nr_allocated_pages -= 1 << order
            return
        if order == 0:
            for k in range(1, NR_ORDERS):
                head = pfn & ~((1 << k) - 1)
                ent = self.split.get((head, k))
                if ent is not None:
                    bit = 1 << (pfn - head)
                    if ent[1] & bit:
                        ent[1] &= ~bit
                        if not ent[1]:
                            del self.split[head, k]
                        self.nr_allocated_pages -= 1
                        return
        raise SimulationError(
            f"freeing pfn {pfn:#x} order {order}: not allocated (double free?)"
        )

    # -- inspection ----------------------------------------------------------------
    def buddyinfo(self, node: int) -> list[int]:
        """free_area[order].nr_free per order, as /proc/buddyinfo shows it."""
        return list(self.zones[node].nr_free)

    def initial_buddyinfo(self, node: int) -> list[int]:
        return list(self._initial[node])

    def free_blocks(self, node: int) -> list[tuple[int, int]]:
        """Every free block (pfn, order) of a node, sorted; regions not yet
        materialised are enumerated too. Memory and time follow the node's
        size: for tests on small nodes."""
        zone = self.zones[node]
        out = [(pfn, k) for k in range(NR_ORDERS) for pfn in zone.free[k]]
        for lo, hi in zone.runs:
            out += [(p, MAX_PAGE_ORDER) for p in range(lo, hi, MAX_ORDER_NR_PAGES)]
        lazy = zone.lazy
        if lazy is not None:
            for r in range(lazy.cursor, lazy.nr_regions):
                base = zone.start_pfn + (r << MAX_PAGE_ORDER)
                pat = lazy.classify(r)
                if pat is None:
                    out.append((base, MAX_PAGE_ORDER))
                else:
                    out += [(base + off, k) for off, k in lazy.patterns[pat][0]]
        return sorted(out)

    def check(self, *, full: bool = False) -> None:
        """Raise SimulationError if an invariant is broken.

        Always: per-order counts match the lists, and every page is free,
        on a per-CPU list, handed out or reserved exactly once in total.
        With ``full`` (small nodes only): no page is in two places and no
        two free buddies of the same order are left unmerged.
        """
        free = pcp = 0
        for zone in self.zones:
            for k in range(NR_ORDERS):
                listed = len(zone.free[k]) + zone.lazy_nr[k]
                if k == MAX_PAGE_ORDER:
                    listed += sum(hi - lo for lo, hi in zone.runs) >> MAX_PAGE_ORDER
                if listed != zone.nr_free[k]:
                    raise SimulationError(
                        f"node {zone.node} order {k}: nr_free {zone.nr_free[k]} "
                        f"but {listed} blocks listed"
                    )
            free += zone.free_pages()
            pcp += sum(len(p) for p in zone.pcp.values())
        split = sum(bin(m).count("1") for _, m in self.split.values())
        whole = sum(1 << k for k in self.allocated.values())
        if free != self.nr_free_pages or pcp != self.nr_pcp_pages:
            raise SimulationError("free or per-CPU page counters out of step")
        if whole + split != self.nr_allocated_pages:
            raise SimulationError("allocated page counter out of step")
        total = free + pcp + self.nr_allocated_pages + self.nr_reserved_pages
        if total != self.total_pages:
            raise SimulationError(
                f"{total} pages accounted for, RAM has {self.total_pages}"
            )
        if full:
            self._check_overlaps()

    def _check_overlaps(self) -> None:
        spans: list[tuple[int, int]] = []
        for zone in self.zones:
            blocks = self.free_blocks(zone.node)
            keyed = {(pfn, k) for pfn, k in blocks}
            for pfn, k in blocks:
                if k < MAX_PAGE_ORDER and (pfn ^ (1 << k), k) in keyed:
                    raise SimulationError(f"free buddies {pfn:#x} order {k} unmerged")
                spans.append((pfn, pfn + (1 << k)))
            for p in zone.pcp.values():
                spans += [(pfn, pfn + 1) for pfn in p]
        spans += [(pfn, pfn + (1 << k)) for pfn, k in self.allocated.items()]
        for (head, k), (_, mask) in self.split.items():
            spans += [(head + i, head + i + 1) for i in range(1 << k) if mask >> i & 1]
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise SimulationError(f"pfn {start:#x} is in two places at once")


class PageAlloc:
    """The page allocator on the simulated machine: SimPy generators that
    take ``zone->lock`` and charge ``kernel_costs`` (see the module doc).

    Costs (estimates built on the profile's ``page_alloc_ns``):

    - a single allocation or free: ``page_alloc_ns`` (the pcp fast path);
    - bulk allocation: ``page_alloc_ns`` per call plus
      ``BULK_PAGE_FACTOR * page_alloc_ns`` per page;
    - under ``zone->lock``: ``ZONE_LOCKED_SHARE`` of the bulk per-page cost
      for every block moved between lists and every merge or split step;
    - ``zero=True`` (``__GFP_ZERO``): ``page_zero_ns`` per page.
    """

    def __init__(self, kernel: Kernel, buddy: BuddyAllocator | None = None) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        m = kernel.machine
        c = kernel.profile.kernel_costs
        self.page_ns = c.page_alloc_ns.value
        self.bulk_page_ns = self.page_ns * BULK_PAGE_FACTOR
        self.locked_ns = self.bulk_page_ns * ZONE_LOCKED_SHARE
        self.zero_ns = c.page_zero_ns.value
        self.store_ns = c.pte_write_ns.value
        self.buddy = buddy if buddy is not None else self._build(kernel)
        self.zone_locks = [m.spinlock("zone_lock") for _ in self.buddy.zones]
        t = kernel.profile.topology
        self._cores_per_node = max(
            1, t.cores_per_socket.value // max(1, t.numa_nodes_per_socket.value)
        )
        self._nodes_per_socket = max(1, t.numa_nodes_per_socket.value)
        self._publish()

    @staticmethod
    def _build(kernel: Kernel) -> BuddyAllocator:
        k = kernel.knobs
        pages = node_pages_from_profile(kernel.profile)
        path = k.buddyinfo
        if path:
            p = Path(path)
            if not p.is_absolute():
                p = kernel.ctx.base_dir / p
            info = load_buddyinfo(p)
            if len(info.nodes()) != len(pages) or info.nodes() != list(
                range(len(pages))
            ):
                raise CaptureError(
                    f"the capture lists nodes {info.nodes()}, the machine has "
                    f"{len(pages)} NUMA node(s)",
                    file=str(p),
                    expected=f"nodes 0..{len(pages) - 1}",
                )
            counts = [info.node_counts(n) for n in range(len(pages))]
            return BuddyAllocator(pages, buddyinfo=counts, buddyinfo_file=str(p))
        return BuddyAllocator(
            pages,
            fragmentation=float(k.fragmentation),
            rng=kernel.rng("kernel.page_alloc"),
        )

    def node_of(self, cpu: int) -> int:
        """numa_node_id(): the node of the CPU's core."""
        place = self.kernel.machine.topo.places[cpu]
        core_in_socket = place.core % self.kernel.machine.topo.cores_per_socket
        node = place.socket * self._nodes_per_socket + min(
            core_in_socket // self._cores_per_node, self._nodes_per_socket - 1
        )
        return min(node, len(self.buddy.zones) - 1)

    def _publish(self) -> None:
        c = self.metrics.counters
        c["buddy.free_pages"] = self.buddy.nr_free_pages
        c["buddy.pcp_pages"] = self.buddy.nr_pcp_pages

    def _locked(self, cpu: int, node: int, step, *args):
        """Run one buddy-list step under zone->lock; returns its result."""
        lock = self.zone_locks[node]
        extra = yield from lock.take(cpu)
        result, work = step(*args)
        yield self.env.timeout(int(work * self.locked_ns + extra))
        lock.release(cpu)
        return result

    # steps returning (result, list work units)
    def _refill(self, node: int, cpu: int):
        moved = self.buddy.pcp_refill(node, cpu)
        return moved, max(1, moved)

    def _rmqueue(self, node: int, order: int):
        got = self.buddy.rmqueue(node, order)
        if got is None:
            return None, 1
        return got[0], 1 + got[1] - order

    def _drain(self, node: int, cpu: int):
        return None, max(1, self.buddy.pcp_free_bulk(node, cpu))

    def _free_one(self, pfn: int, order: int):
        return None, 1 + self.buddy.free_one(pfn, order)

    # -- generators ----------------------------------------------------------------
    def alloc_pages(
        self,
        cpu: int,
        order: int = 0,
        *,
        node: int | None = None,
        zero: bool = False,
        thisnode: bool = False,
    ):
        """alloc_pages_node(): returns a pfn, or None (high orders can fail)."""
        b = self.buddy
        b.check_order(order)
        pref = self.node_of(cpu) if node is None else node
        pfn = None
        for n in b.fallback_nodes(pref, thisnode):
            if order == 0:
                pfn = b.pcp_pop(n, cpu)
                if pfn is None:
                    moved = yield from self._locked(cpu, n, self._refill, n, cpu)
                    if moved:
                        pfn = b.pcp_pop(n, cpu)
            else:
                pfn = yield from self._locked(cpu, n, self._rmqueue, n, order)
                if pfn is not None:
                    b.prep_new_page(pfn, order)
            if pfn is not None:
                break
        ns = self.page_ns + (
            self.zero_ns * (1 << order) if zero and pfn is not None else 0
        )
        yield self.env.timeout(int(ns))
        if pfn is None:
            self.metrics.inc(f"buddy.order{order}_failures")
        self._publish()
        return pfn

    def alloc_pages_bulk(
        self, cpu: int, nr_pages: int, *, node: int | None = None, zero: bool = False
    ):
        """alloc_pages_bulk(): up to ``nr_pages`` order-0 pages of the local
        node (vmalloc asks for at most BULK_CHUNK at a time); one page from
        the ordinary path when the local node has none."""
        out, ns = yield from self.alloc_pages_bulk_ns(
            cpu, nr_pages, node=node, zero=zero
        )
        yield self.env.timeout(int(ns))
        return out

    def alloc_pages_bulk_ns(
        self, cpu: int, nr_pages: int, *, node: int | None = None, zero: bool = False
    ):
        """alloc_pages_bulk() returning ``(pages, ns)``: the lock-free part
        is left for the caller to fold into its next timeout, one SimPy
        event fewer per call on the vmalloc hot path."""
        b = self.buddy
        n = self.node_of(cpu) if node is None else node
        out: list[int] = []
        while len(out) < nr_pages:
            pfn = b.pcp_pop(n, cpu)
            if pfn is None:
                moved = yield from self._locked(cpu, n, self._refill, n, cpu)
                if not moved:
                    break
                continue
            out.append(pfn)
        if not out and nr_pages > 0:
            pfn = yield from self.alloc_pages(cpu, 0, node=n, zero=zero)
            return ([] if pfn is None else [pfn]), 0.0
        per_page = self.bulk_page_ns - self.locked_ns + (self.zero_ns if zero else 0)
        self._publish()
        return out, self.page_ns + len(out) * per_page

    def free_pages(self, cpu: int, pfn: int, order: int = 0):
        """__free_pages(): order 0 to this CPU's list (draining a batch under
        zone->lock when it reaches pcp->high), larger blocks to the buddy."""
        b = self.buddy
        b.check_order(order)
        node = b.zone_of(pfn).node
        if order == 0:
            if b.pcp_push(pfn, cpu):
                yield from self._locked(cpu, node, self._drain, node, cpu)
        else:
            b.free_pages_prepare(pfn, order)
            yield from self._locked(cpu, node, self._free_one, pfn, order)
        yield self.env.timeout(int(self.page_ns))
        self._publish()

    def free_pages_batch(self, cpu: int, pfns: list[int]):
        """A loop of __free_page() over order-0 ``pfns`` (vfree(),
        release_pages()): each goes to this CPU's list, a batch drained
        under zone->lock whenever the list passes pcp->high. One timeout for
        the lock-free part instead of one per page."""
        ns = yield from self.free_pages_batch_ns(cpu, pfns)
        yield self.env.timeout(int(ns))

    def free_pages_batch_ns(self, cpu: int, pfns: list[int]):
        """free_pages_batch() returning the lock-free ns for the caller to
        spend (see alloc_pages_bulk_ns)."""
        b = self.buddy
        for pfn in pfns:
            if b.pcp_push(pfn, cpu):
                node = b.zone_of(pfn).node
                yield from self._locked(cpu, node, self._drain, node, cpu)
        self._publish()
        return self.page_ns * len(pfns)

    def split_page(self, cpu: int, pfn: int, order: int):
        """split_page(): one refcount store per tail page (costed like a
        PTE store, estimate)."""
        self.buddy.split_page(pfn, order)
        if order:
            yield self.env.timeout(int(((1 << order) - 1) * self.store_ns))
