"""Page-walk cost: cycles per walk from where each level's entry lives.

The method is the one hardware.md section 2 describes (Virtuoso's
``calculatePTWCycles``): a walk reads one entry per level, serially, from
the top level the paging-structure caches cannot skip down to the leaf; each
read costs the latency of the cache level (L2, LLC or DRAM) holding that
entry's line. ``walk.levels`` levels are in use (PML5, PML4, PDPT, PD, PT on
x86 with 5; PGD to PTE on arm64); a walk ending at a 2M or 1G leaf stops
above the PT or the PD.

Paging-structure caches hold non-leaf entries (SDM Vol. 3 section 4.10.3:
"No PDE-cache entry is created for a PDE that maps a page"). A hit in the
cache of a level lets the walk start one level below it, and the walker
uses the deepest hit. ``walk.pwc`` is either ``split`` (Intel: a PML5E,
PML4E, PDPTE and PDE cache, each of its own size) or ``unified`` (AMD's page
walk cache, Arm's walk entries in the L2 TLB: one cache for every level).

Nothing is simulated per access; everything comes from the footprint of the
batch the walks belong to, the distinct entries it needs at each level:

- a cache of C entries facing F distinct entries of its level hits with
  probability min(1, C / F), the LRU hit ratio of uniform access
  (hardware.md section 9, point 2); a unified cache serves the upper levels
  first, whose few entries every walk below them uses; the levels are taken
  as independent, so a level is read with the probability that every cache
  at or below it missed;
- a level's lines stay in L2 while they fit in half of it, in the LLC while
  they fit in half of that, and come from DRAM past that. Half, because
  page-table lines share the caches with the data the code touches. An
  estimate, as are the cache sizes in the profiles. The fastest read is an
  L2 hit even when the line may sit in L1D: a walk whose entries are all
  cached still took about 20 cycles more than an STLB hit on Haswell
  (mynavi, hardware.md section 2), an L2 latency rather than an L1 one.

Callers that know only the leaf pages and the 2M regions get the upper
levels' footprints as their least possible value (each entry of a level
maps 512 of the level below): compact kernel areas, as vmalloc and the
module area are.
"""

from __future__ import annotations

from simcore.profile import HwProfile

ENTRY = 8
LINE = 64
FANOUT_BITS = 9  # 512 entries per table at 4 KiB granule
MEMO_SIZE = 4096


class PageWalker:
    def __init__(self, profile: HwProfile) -> None:
        m = profile.memory
        w = profile.walk
        ghz = profile.clock_ghz.value
        self.levels = w.levels.value
        self.walkers = w.walkers.value
        pwc = w.pwc
        self.unified = pwc.kind.value == "unified"
        self.pwc_total = pwc.entries.value if self.unified else 0
        # cache sizes by level, index 0 the PT (no cache: leaf entries are
        # not cached), then PD, PDPT, PML4, PML5
        split = (None, pwc.pd, pwc.pdpt, pwc.pml4, pwc.pml5)
        self.pwc_sizes = tuple(
            0 if v is None or self.unified else v.value for v in split
        )[: self.levels]
        self.l2_cycles = m.l2_hit_ns.value * ghz
        self.llc_cycles = m.llc_hit_ns.value * ghz
        self.dram_cycles = m.dram_local_ns.value * ghz
        self.l2_room = m.l2_bytes.value // 2
        self.llc_room = m.llc_bytes.value // 2
        per_line = LINE // ENTRY
        self._fit = tuple(
            per_line * (room // LINE) for room in (self.l2_room, self.llc_room)
        )
        # executing code asks the same footprints again and again: the
        # answers by argument tuple, dropped wholesale when it grows large
        self._memo: dict[tuple, float] = {}

    def line_cycles(self, table_bytes: int) -> float:
        """Latency of an entry whose level's lines total ``table_bytes``."""
        if table_bytes <= self.l2_room:
            return self.l2_cycles
        if table_bytes <= self.llc_room:
            return self.llc_cycles
        return self.dram_cycles

    def _entry_cycles(self, entries: int) -> float:
        """:meth:`line_cycles` of a level of ``entries`` entries."""
        # _lines(entries) <= room exactly when entries fit room's whole lines
        if entries <= self._fit[0]:
            return self.l2_cycles
        if entries <= self._fit[1]:
            return self.llc_cycles
        return self.dram_cycles

    def walk_cycles(
        self,
        shift: int,
        pages: int,
        regions_2m: int,
        regions_1g: int = 0,
        regions_512g: int = 0,
        regions_256t: int = 0,
    ) -> float:
        """Expected cycles of one walk to a leaf of size ``1 << shift``.

        ``pages`` is the working set in pages of that size; ``regions_2m``
        to ``regions_256t`` the distinct regions the batch spans at each
        level (the PD, PDPT, PML4 and PML5 entries it needs), 0 where the
        caller does not know them.
        """
        key = (shift, pages, regions_2m, regions_1g, regions_512g, regions_256t)
        cycles = self._memo.get(key)
        if cycles is None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            cycles = self._memo[key] = self._walk(
                shift, pages, (0, regions_2m, regions_1g, regions_512g, regions_256t)
            )
        return cycles

    def _walk(self, shift: int, pages: int, known: tuple[int, ...]) -> float:
        leaf = 0 if shift < 21 else (1 if shift < 30 else 2)
        # distinct entries needed at each level from the leaf up: what the
        # caller counted, at least one entry per 512 of the level below
        need = [max(1, pages)]
        for lvl in range(leaf + 1, self.levels):
            need.append(max(1, -(-need[-1] >> FANOUT_BITS), known[lvl]))
        n = len(need)
        # hit probability of each non-leaf level's cache, need[] indexing
        if self.unified:
            hit = [0.0] * n
            room = self.pwc_total
            for i in range(n - 1, 0, -1):  # upper levels first
                hit[i] = min(1.0, room / need[i])
                room = max(0, room - need[i])
        else:
            sizes = self.pwc_sizes
            hit = [0.0] + [min(1.0, sizes[leaf + i] / need[i]) for i in range(1, n)]
        cost = self._entry_cycles
        cycles = cost(need[0])
        reach = 1.0  # probability that the walk reads the level
        for i in range(1, n):
            reach *= 1.0 - hit[i]  # read only if its own cache missed too
            if reach == 0.0:
                break
            cycles += reach * cost(need[i])
        return cycles


def _lines(entries: int) -> int:
    return max(1, -(-entries * ENTRY // LINE)) * LINE
