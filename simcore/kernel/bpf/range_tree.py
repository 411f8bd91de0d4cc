"""kernel/bpf/range_tree.c: the free page offsets of a BPF arena (v6.13+).

The kernel keeps the *free* offsets as disjoint inclusive ranges, each a
``range_node`` linked into two red-black trees: an interval tree by start
(``range_it_iter_first()``) and a tree sorted by size, larger sizes to the
left, equal sizes inserted to the right (``__range_size_insert()``). Nodes
come from ``bpf_mem_alloc`` (per-CPU caches, no kmalloc). The operations,
with the kernel's semantics:

- ``range_tree_find(len)``: ``__find_range()`` keeps going right while the
  node is large enough, so it returns the *smallest* free range of at least
  ``len`` pages (best fit), and among ranges of that size the one inserted
  last; the allocation takes its first ``len`` pages;
- ``range_tree_clear(start, len)``: mark allocated: each overlapping node is
  split (a new node), shrunk from the left or right (removed and
  re-inserted, which makes it the newest of its size), or freed;
- ``is_range_tree_set(start, len)``: is the whole range free;
- ``range_tree_set(start, len)``: mark free, merging with the left and
  right neighbours, so no two free ranges ever touch.

The v6.9 maple tree (``mtree_alloc_range``: lowest fit) is not modelled
separately: both are O(log n) trees under the same lock, and the arena
model charges each the same per-node cost.

Stored sparsely, as the kernel stores it: one entry per free range, so an
arena of 4 GiB with nothing allocated is a single range, whatever its size.
Sorted Python lists stand in for the two trees. Every operation adds the
nodes it touched to ``visits`` (a tree descent touches about log2(n)
nodes; an insert or erase touches both trees) and node allocations and
frees to ``node_allocs`` / ``node_frees``; the arena charges them under its
lock and resets them with :meth:`take_cost`.
"""

from __future__ import annotations

import bisect

from simcore.errors import SimulationError

ENOENT = -2


class RangeTree:
    def __init__(self) -> None:
        self._starts: list[int] = []  # sorted starts (the interval tree)
        self._last: dict[int, int] = {}  # start -> last, inclusive
        self._seq: dict[int, int] = {}  # start -> insertion number
        self._sizes: list[tuple[int, int, int]] = []  # (size, -seq, start)
        self._next_seq = 0
        self.free = 0  # free pages in all ranges
        self.visits = 0
        self.node_allocs = 0
        self.node_frees = 0

    # -- bookkeeping -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._starts)

    def _depth(self) -> int:
        return max(1, len(self._starts).bit_length())

    def take_cost(self) -> tuple[int, int]:
        """(nodes visited, nodes allocated or freed) since the last call."""
        out = (self.visits, self.node_allocs + self.node_frees)
        self.visits = self.node_allocs = self.node_frees = 0
        return out

    def _insert(self, start: int, last: int) -> None:
        # range_it_insert(): both trees
        self.visits += 2 * self._depth()
        bisect.insort(self._starts, start)
        self._last[start] = last
        self._next_seq += 1
        self._seq[start] = self._next_seq
        bisect.insort(self._sizes, (last - start + 1, -self._next_seq, start))
        self.free += last - start + 1

    def _remove(self, start: int) -> int:
        # range_it_remove(): both trees
        self.visits += 2 * self._depth()
        del self._starts[bisect.bisect_left(self._starts, start)]
        last = self._last.pop(start)
        key = (last - start + 1, -self._seq.pop(start), start)
        del self._sizes[bisect.bisect_left(self._sizes, key)]
        self.free -= last - start + 1
        return last

    def _first(self, start: int, last: int) -> int | None:
        """range_it_iter_first(): the lowest free range overlapping
        [start, last], by its start."""
        self.visits += self._depth()
        starts = self._starts
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0 and self._last[starts[i]] >= start:
            return starts[i]
        if i + 1 < len(starts) and starts[i + 1] <= last:
            return starts[i + 1]
        return None

    # -- the kernel API --------------------------------------------------------
    def find(self, length: int) -> int:
        """range_tree_find(): start of the best-fitting free range, or -ENOENT."""
        self.visits += self._depth()
        i = bisect.bisect_left(self._sizes, (length, -(1 << 62), -1))
        if i == len(self._sizes):
            return ENOENT
        return self._sizes[i][2]

    def clear(self, start: int, length: int) -> None:
        """range_tree_clear(): mark [start, start + length) allocated."""
        last = start + length - 1
        while (s := self._first(start, last)) is not None:
            old_last = self._last[s]
            if s < start and old_last > last:
                self._remove(s)
                self._insert(s, start - 1)
                self.node_allocs += 1
                self._insert(last + 1, old_last)
            elif s < start:
                self._remove(s)
                self._insert(s, start - 1)
            elif old_last > last:
                self._remove(s)
                self._insert(last + 1, old_last)
                break
            else:
                self._remove(s)
                self.node_frees += 1

    def is_set(self, start: int, length: int) -> bool:
        """is_range_tree_set() == 0: the whole range is free."""
        s = self._first(start, start + length - 1)
        return s is not None and s <= start and self._last[s] >= start + length - 1

    def set(self, start: int, length: int) -> None:
        """range_tree_set(): mark [start, start + length) free, merging."""
        last = start + length - 1
        if self.is_set(start, length):
            return
        self.clear(start, length)
        # start - 1 wraps to U32_MAX for start 0 in the kernel: no neighbour
        left = self._first(start - 1, start - 1) if start > 0 else None
        right = self._first(last + 1, last + 1)
        if left is not None and right is not None:
            self._remove(left)
            right_last = self._remove(right)
            self._insert(left, right_last)
            self.node_frees += 1
        elif left is not None:
            self._remove(left)
            self._insert(left, last)
        elif right is not None:
            right_last = self._remove(right)
            self._insert(start, right_last)
        else:
            self._insert(start, last)
            self.node_allocs += 1

    def destroy(self) -> int:
        """range_tree_destroy(): free every node; returns how many."""
        n = len(self._starts)
        self.visits += n * self._depth()
        self.node_frees += n
        self._starts.clear()
        self._last.clear()
        self._seq.clear()
        self._sizes.clear()
        self.free = 0
        return n

    # -- inspection (no cost) ----------------------------------------------------
    def free_in(self, start: int, length: int) -> int:
        """Free pages inside [start, start + length)."""
        end = start + length
        starts = self._starts
        i = max(0, bisect.bisect_right(starts, start) - 1)
        total = 0
        while i < len(starts) and starts[i] < end:
            lo = max(starts[i], start)
            hi = min(self._last[starts[i]] + 1, end)
            if hi > lo:
                total += hi - lo
            i += 1
        return total

    def ranges(self) -> list[tuple[int, int]]:
        """Free ranges as (start, last), by start."""
        return [(s, self._last[s]) for s in self._starts]

    def check(self) -> None:
        """The tree's invariants: disjoint, never adjacent, both indexes and
        the free count consistent."""
        prev_last = None
        total = 0
        for s in self._starts:
            last = self._last[s]
            if last < s:
                raise SimulationError(f"range tree: empty range at {s}")
            if prev_last is not None and s <= prev_last + 1:
                raise SimulationError(f"range tree: ranges touch or overlap at {s}")
            prev_last = last
            total += last - s + 1
        if total != self.free:
            raise SimulationError(f"range tree: free count {self.free} != {total}")
        sizes = sorted((self._last[s] - s + 1, -self._seq[s], s) for s in self._starts)
        if sizes != self._sizes:
            raise SimulationError("range tree: size index out of step")
