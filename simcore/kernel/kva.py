"""Free kernel virtual address space of one range (vmalloc or modules).

Stand-in for ``free_vmap_area_root``/``free_vmap_area_list`` of
mm/vmalloc.c: address-sorted free blocks, lowest-address first fit
(``find_vmap_lowest_match``), clipping a block at an edge or splitting it
(``va_clip``), and merging a freed block with its neighbours
(``__merge_or_add_vmap_area``).

The kernel keeps the blocks in an rb-tree augmented with
``subtree_max_size`` so a search visits O(log n) nodes. This structure uses
two sorted Python lists and a linear first-fit scan; the *work charged* to
the lock holder is what the kernel's tree would do: ``visits`` reports
ceil(log2(n + 1)) node visits for a search or a merge, independent of how
this class finds the block.
"""

from __future__ import annotations

import bisect

PAGE = 4096


class KvaSpace:
    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.starts: list[int] = [start]
        self.ends: list[int] = [end]

    def __len__(self) -> int:
        return len(self.starts)

    def _visits(self) -> int:
        return max(1, len(self.starts).bit_length())

    def alloc(self, size: int, align: int = PAGE) -> tuple[int | None, int, str]:
        """Lowest-address fit. Returns (address or None, visits, fit type).

        Fit types as in va_clip: FL (exact), LE/RE (edge), NE (split).
        """
        visits = self._visits()
        for i, (s, e) in enumerate(zip(self.starts, self.ends, strict=True)):
            a = (s + align - 1) & ~(align - 1)
            if a + size > e:
                continue
            if a == s and a + size == e:
                del self.starts[i], self.ends[i]
                return a, visits, "FL"
            if a == s:
                self.starts[i] = a + size
                return a, visits, "LE"
            if a + size == e:
                self.ends[i] = a
                return a, visits, "RE"
            self.ends[i] = a
            self.starts.insert(i + 1, a + size)
            self.ends.insert(i + 1, e)
            return a, visits + 1, "NE"
        return None, visits, "NONE"

    def free(self, addr: int, size: int) -> int:
        """Give [addr, addr + size) back, merging neighbours. Returns visits."""
        visits = self._visits()
        end = addr + size
        i = bisect.bisect_left(self.starts, addr)
        if i < len(self.starts) and self.starts[i] < end:
            raise ValueError(f"double free of KVA {addr:#x}")
        if i > 0 and self.ends[i - 1] > addr:
            raise ValueError(f"double free of KVA {addr:#x}")
        merge_prev = i > 0 and self.ends[i - 1] == addr
        merge_next = i < len(self.starts) and self.starts[i] == end
        if merge_prev and merge_next:
            self.ends[i - 1] = self.ends[i]
            del self.starts[i], self.ends[i]
        elif merge_prev:
            self.ends[i - 1] = end
        elif merge_next:
            self.starts[i] = addr
        else:
            self.starts.insert(i, addr)
            self.ends.insert(i, end)
        return visits

    def free_bytes(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends, strict=True))
