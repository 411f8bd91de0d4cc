"""mm/page_alloc.c: the buddy allocator's starting state, and a
fragmented node brought to the free lists one region at a time.

Kernel function modelled: ``memblock_free_all()``, which hands memory to
the free lists at boot (the fresh state); the other two starting states
are what earlier use, or a real host, left behind.

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
"""

from __future__ import annotations

import numpy as np

from simcore.constants import PAGE_SHIFT
from simcore.errors import CaptureError, SimulationError
from simcore.kernel.buddyinfo import MAX_PAGE_ORDER, NR_ORDERS
from simcore.kernel.mmzone import MAX_ORDER_NR_PAGES, PAGEBLOCK_ORDER, Zone

# Fragmentation model (estimate): a broken 4 MiB region is always split to
# order 8, then each block is split further with this probability, down to
# order 0; each leaf is in use with probability FRAG_USED_P. With 0.75 small
# free blocks outnumber large ones, 1.7 to 1.9 times per order down.
FRAG_SPLIT_P = 0.75
FRAG_USED_P = 0.5
FRAG_PATTERNS = 64  # distinct broken-region layouts drawn per node

_M64 = (1 << 64) - 1


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


class BuddySeed:
    """The starting states of :class:`~simcore.kernel.buddy.BuddyAllocator`
    other than fresh (fragmented by the knob, or laid out from a capture)
    and the lazy materialisation of a fragmented node. Mixed into the
    allocator, whose ``zones`` and counters it fills."""

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

    # -- memory in use from the start (a captured host's) ------------------------
    def take_free(self, node: int, nr: int, order: int = 0) -> list[int]:
        """``nr`` pages (``order`` 0) or ``nr`` aligned blocks of ``order``
        handed out from the free lists at boot, as vm_area_alloc_pages()'s
        high-order path takes them: the largest block that fits the rest,
        split_page()d, local node first, then the zonelist. The pfns of
        every page, fewer when memory ran out."""
        out: list[int] = []
        want = nr << order
        while len(out) < want:
            k = min((want - len(out)).bit_length() - 1, MAX_PAGE_ORDER)
            got = None
            while got is None and k >= order:
                for n in self.fallback_nodes(node):
                    got = self.rmqueue(n, k)
                    if got is not None:
                        break
                else:
                    k -= 1
            if got is None:
                break
            pfn = got[0]
            self.prep_new_page(pfn, k)
            self.split_page(pfn, k)
            out.extend(range(pfn, pfn + (1 << k)))
        return out

    def reserve_free(self, node: int, nr: int) -> int:
        """Take ``nr`` free pages of ``node`` out of the free lists as in use
        by an unknown owner (a capture's used memory), largest blocks
        first, so that what stays free is what the capture says. Returns
        the pages taken."""
        taken = 0
        while taken < nr:
            k = min((nr - taken).bit_length() - 1, MAX_PAGE_ORDER)
            got = self.rmqueue(node, k)
            while got is None and k > 0:
                k -= 1
                got = self.rmqueue(node, k)
            if got is None:
                break
            taken += 1 << k
        self.zones[node].reserved += taken
        self.nr_reserved_pages += taken
        return taken

    def claim_used(self, node: int, nr: int, order: int = 0) -> list[int]:
        """``nr`` pages (or aligned blocks of ``order``) of the memory the
        starting state left in use (a /proc/buddyinfo capture's: its free
        blocks are laid out, the rest was in use on the host), handed to an
        owner the capture names, lowest addresses first. They become
        ordinary allocated pages, so the owner may free them. Fewer when
        that memory is used up."""
        gaps = self._used_gaps(node)
        size = 1 << order
        out: list[int] = []
        i = self._gap_first[node]
        while i < len(gaps) and gaps[i][0] == gaps[i][1]:
            i += 1
        self._gap_first[node] = i
        while len(out) < nr * size and i < len(gaps):
            lo, hi = gaps[i]
            if not order:
                take = min(hi - lo, nr - len(out))
                for pfn in range(lo, lo + take):
                    self.prep_new_page(pfn, 0)
                out.extend(range(lo, lo + take))
                gaps[i][0] = lo + take
                i += 1
                continue
            head = -(-lo // size) * size
            if head + size > hi:
                i += 1
                continue
            # the unaligned front stays in use, unclaimed, for order-0 claims
            gaps[i] = [head + size, hi]
            if lo < head:
                gaps.insert(i, [lo, head])
            self.prep_new_page(head, order)
            self.split_page(head, order)
            out.extend(range(head, head + size))
        self.zones[node].reserved -= len(out)
        self.nr_reserved_pages -= len(out)
        return out

    def _used_gaps(self, node: int) -> list[list[int]]:
        """The in-use pfn ranges of a node between its free blocks, built
        once, before the run allocates anything."""
        if not hasattr(self, "_gaps"):
            self._gaps: dict[int, list[list[int]]] = {}
            self._gap_first: dict[int, int] = {}
        if node not in self._gaps:
            zone = self.zones[node]
            if zone.lazy is not None:
                raise SimulationError("a fragmented node has no captured used memory")
            # free blocks, and pages already handed out or on per-CPU lists
            spans = [(p, p + (1 << k)) for k in range(NR_ORDERS) for p in zone.free[k]]
            spans += [(lo, hi) for lo, hi in zone.runs]
            spans += [(p, p + (1 << k)) for p, k in self.allocated.items()]
            spans += [(p, p + (1 << k)) for p, k in self.split]
            spans += [(p, p + 1) for pcp in zone.pcp.values() for p in pcp]
            spans = sorted(x for x in spans if zone.start_pfn <= x[0] < zone.end_pfn)
            gaps = []
            cur = zone.start_pfn
            for lo, hi in spans:
                if lo > cur:
                    gaps.append([cur, lo])
                cur = max(cur, hi)
            if cur < zone.end_pfn:
                gaps.append([cur, zone.end_pfn])
            self._gaps[node] = gaps
            self._gap_first[node] = 0
        return self._gaps[node]
