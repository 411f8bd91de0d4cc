"""Where the pages of a captured host's state come from when a run starts.

Seeded vmalloc areas, their page tables and the direct map's split tables
were allocated by the host long before the capture; the model hands them
pages at time zero, before any event:

- when the free memory itself was captured (``kernel.buddyinfo``), the
  host's used pages are those the capture leaves between its free blocks,
  and seeded state takes its pages from there
  (:meth:`~simcore.kernel.buddy_seed.BuddySeed.claim_used`), so the free
  lists stay exactly as captured; only when that runs out does it take
  free pages, and says how many;
- otherwise the free memory is the model's own (fresh or
  ``kernel.fragmentation``) and seeded state takes pages from it as the
  kernel gave them out (:meth:`~simcore.kernel.buddy_seed.BuddySeed.take_free`:
  ``vm_area_alloc_pages()``'s largest-block-first path), so the free lists
  shrink by what the capture shows in use.
"""

from __future__ import annotations

from simcore.kernel.buddy import BuddyAllocator


class BootPages:
    def __init__(self, buddy: BuddyAllocator, captured_free: bool) -> None:
        self.buddy = buddy
        self.captured_free = captured_free
        self.from_used = 0  # pages of the capture's used memory handed out
        self.from_free = 0  # pages taken from the free lists

    def pages(self, node: int, nr: int) -> list[int]:
        """``nr`` order-0 pages on ``node`` (or its fallbacks), fewer when
        memory ran out."""
        b = self.buddy
        node %= len(b.zones)
        out: list[int] = []
        if self.captured_free:
            for n in b.fallback_nodes(node):
                out += b.claim_used(n, nr - len(out))
                if len(out) == nr:
                    break
            self.from_used += len(out)
        if len(out) < nr:
            more = b.take_free(node, nr - len(out))
            self.from_free += len(more)
            out += more
        return out

    def block(self, node: int, order: int) -> list[int] | None:
        """The pages of one naturally aligned block of ``order`` (for a
        2 MiB leaf), or None when no such block is left."""
        b = self.buddy
        node %= len(b.zones)
        if self.captured_free:
            for n in b.fallback_nodes(node):
                got = b.claim_used(n, 1, order)
                if got:
                    self.from_used += len(got)
                    return got
        got = b.take_free(node, 1, order)
        if len(got) < 1 << order:
            return None
        self.from_free += len(got)
        return got

    def table_page(self) -> int | None:
        """One page for a page table (node 0, where boot allocates them)."""
        got = self.pages(0, 1)
        return got[0] if got else None

    def taken(self) -> int:
        return self.from_used + self.from_free
