"""Page-walk cost: cycles per walk from where each level's entry lives.

The method is the one hardware.md section 2 describes (Virtuoso's
``calculatePTWCycles``): a walk reads one entry per level, serially; a level
whose entry is held in a paging-structure cache costs nothing extra, the
others cost the latency of the cache level holding that entry's line. A walk
ending at a 2M or 1G leaf skips the levels below it.

Where the lines live is decided from footprints, not simulated per access:
the page-table lines a working set needs (8-byte entries, 64-byte lines)
stay in L2 while they fit in half of it, in the LLC while they fit in half
of that, and come from DRAM past that. Half, because page-table lines share
the caches with the data the code touches: an estimate, as are the
paging-structure cache sizes in the profiles.

Upper levels (PML4/PML5, PDPT) of kernel mappings are few (one PDPT entry
covers 1 GiB), so they hit the paging-structure caches; the PD level hits
while the 2M regions touched fit ``walk.pwc_entries``.
"""

from __future__ import annotations

from simcore.profile import HwProfile

ENTRY = 8
LINE = 64


class PageWalker:
    def __init__(self, profile: HwProfile) -> None:
        m = profile.memory
        ghz = profile.clock_ghz.value
        self.levels = profile.walk.levels.value
        self.walkers = profile.walk.walkers.value
        self.pwc_entries = profile.walk.pwc_entries.value
        self.l2_cycles = m.l2_hit_ns.value * ghz
        self.llc_cycles = m.llc_hit_ns.value * ghz
        self.dram_cycles = m.dram_local_ns.value * ghz
        self.l2_room = m.l2_bytes.value // 2
        self.llc_room = m.llc_bytes.value // 2

    def line_cycles(self, table_bytes: int) -> float:
        """Latency of an entry whose level's lines total ``table_bytes``."""
        if table_bytes <= self.l2_room:
            return self.l2_cycles
        if table_bytes <= self.llc_room:
            return self.llc_cycles
        return self.dram_cycles

    def walk_cycles(self, shift: int, pages: int, regions_2m: int) -> float:
        """One walk to a leaf of size ``1 << shift``.

        ``pages`` is the working set in pages of that size, ``regions_2m``
        the number of distinct 2M regions it spans (the PD entries needed).
        """
        cycles = 0.0
        if shift < 21:  # 4K leaf: PTE line, then the PD level above it
            cycles += self.line_cycles(_lines(pages))
            if regions_2m > self.pwc_entries:
                cycles += self.line_cycles(_lines(regions_2m))
        elif shift < 30:  # 2M leaf: the PDE is the leaf
            cycles += self.line_cycles(_lines(pages))
        else:  # 1G leaf: PDPT entry, one line for hundreds of GiB
            cycles += self.l2_cycles
        return cycles


def _lines(entries: int) -> int:
    return max(1, -(-entries * ENTRY // LINE)) * LINE
