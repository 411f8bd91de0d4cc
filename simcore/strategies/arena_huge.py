"""``arena_huge``: 2 MiB pages for whole 2 MiB regions of the arena.

What a huge-page arena would gain and waste. The first allocation (by a
program or a user fault) touching an aligned 2 MiB region of the arena
that holds no 4K page yet backs the *whole* region with one zeroed order-9
page behind a PMD leaf in the kernel view, as THP does on first touch;
later allocations in the region take pages of it without allocating or
mapping (a page handed out before is zeroed again, keeping the zeroed-page
contract of bpf_arena_alloc_pages). A region stays backed until every page
of it is free; then its PMD is cleared, its 2 MiB range flushed on all CPUs
and the order-9 page freed. Freeing part of a region therefore costs no
kernel flush at all.

Where no order-9 page is free (``arena.huge_fallbacks``), where a region
already has 4K pages or scratch PTEs, or where it reaches past the end of
the arena, pages are 4K exactly as in ``arena_4k``.

The price: backed but unallocated pages (``mem.arena.waste_bytes``), 2 MiB
of zeroing on a region's first page, and freed pages that stay readable
and writable until their region empties. The user view stays 4K: a PMD
user mapping would let user space touch unallocated pages without the
fault that allocates them.

Layout: both views are 2 MiB-aligned (``kva_align``, ``user_align``: the
KVA reservation grows by 2 MiB to align in), so page offset ``p`` lies in
region ``p >> 9`` of both. In the Dec 2025 era the creation-time
pre-population stops at the PMD tables: pre-allocated PTE tables would
have to be torn down (with a flush) under every PMD leaf. The scratch-page
installer needs a PTE table, so a stray BPF access into a region without
one takes the exception fix-up instead (``arena.kernel_faults``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from simcore.errors import SimulationError
from simcore.kernel.bpf.arena import FreedSpan
from simcore.strategies.arena_base import ArenaStrategy

if TYPE_CHECKING:
    from simcore.kernel.bpf.arena import BpfArena

HPAGE_ORDER = 9
HPAGE_PAGES = 1 << HPAGE_ORDER
HPAGE_SIZE = HPAGE_PAGES << 12


@dataclass
class _Regions:
    head: dict[int, int] = field(default_factory=dict)  # region -> head pfn
    dirty: set[int] = field(default_factory=set)  # pgoffs handed out since zeroing


class ArenaHuge(ArenaStrategy):
    name = "arena_huge"
    first_release = None
    release_source = (
        "no series proposed huge kernel pages for BPF arenas: a what-if on "
        "kernel/bpf/arena.c"
    )
    summary = "2M kernel pages for whole 2 MiB arena regions, 4K otherwise"
    models = "a huge-page BPF arena (what-if on kernel/bpf/arena.c)"
    prepopulate_ptes = False
    kva_align = HPAGE_SIZE
    user_align = HPAGE_SIZE

    def init_arena(self, arena: BpfArena) -> _Regions:
        return _Regions()

    # -- allocation ------------------------------------------------------------
    def _eligible(self, arena: BpfArena, r: int) -> bool:
        lo = r << HPAGE_ORDER
        hi = lo + HPAGE_PAGES
        if hi > arena.max_entries:
            return False
        pfn, scratch = arena.pfn, arena.scratch
        return not any(p in pfn or p in scratch for p in range(lo, hi))

    def populate(self, cpu: int, arena: BpfArena, pgoff: int, n: int):
        st: _Regions = arena.priv
        if arena.kaddr(0) % HPAGE_SIZE:
            raise SimulationError("arena_huge: kernel view not 2 MiB aligned")
        done = 0
        end = pgoff + n
        p = pgoff
        while p < end:
            r = p >> HPAGE_ORDER
            q = min(end, (r + 1) << HPAGE_ORDER)
            k = q - p
            if r in st.head:
                reused = sum(1 for x in range(p, q) if x in st.dirty)
                if reused:
                    yield arena.env.timeout(int(reused * arena.zero_ns))
                st.dirty.update(range(p, q))
            elif self._eligible(arena, r) and (
                yield from self._map_region(cpu, arena, r)
            ):
                st.dirty.update(range(p, q))
            else:
                got = yield from arena.populate_4k(cpu, p, k)
                if got < k:
                    return done + got
            done += k
            p = q
        return done

    def _map_region(self, cpu: int, arena: BpfArena, r: int):
        """One zeroed order-9 page behind a PMD leaf; False to fall back."""
        head = yield from arena.pa.alloc_pages(cpu, HPAGE_ORDER, zero=True)
        if head is None:
            arena.metrics.inc("arena.huge_fallbacks")
            return False
        arena._hold(HPAGE_PAGES)
        ka = arena.kaddr(r << HPAGE_ORDER)
        ok = yield from arena.pt.vmap_pages_range(
            cpu, ka, range(head, head + HPAGE_PAGES), page_shift=21
        )
        if not ok:
            yield from arena.pa.free_pages(cpu, head, HPAGE_ORDER)
            arena._hold(-HPAGE_PAGES)
            arena.metrics.inc("arena.huge_fallbacks")
            return False
        arena.priv.head[r] = head
        arena.metrics.inc("arena.huge_maps")
        return True

    def backing_pfn(self, arena: BpfArena, pgoff: int) -> int | None:
        head = arena.priv.head.get(pgoff >> HPAGE_ORDER)
        if head is not None:
            return head + (pgoff & (HPAGE_PAGES - 1))
        return arena.pfn.get(pgoff)

    def claim(self, cpu: int, arena: BpfArena, pgoff: int):
        st: _Regions = arena.priv
        arena.rt.clear(pgoff, 1)
        ns = arena._tree_ns()
        if pgoff in st.dirty:
            ns += arena.zero_ns
        st.dirty.add(pgoff)
        yield arena.env.timeout(int(ns))

    def kern_shifts(self, arena: BpfArena, pgoffs: np.ndarray) -> np.ndarray:
        out = np.full(len(pgoffs), 12, dtype=np.uint8)
        heads = arena.priv.head
        if heads and len(pgoffs):
            regions = np.fromiter(heads, dtype=np.int64, count=len(heads))
            out[np.isin(np.asarray(pgoffs) >> HPAGE_ORDER, regions)] = 21
        return out

    # -- free --------------------------------------------------------------------
    def unmap(
        self, cpu: int, arena: BpfArena, pgoff: int, n: int, per_page: bool
    ) -> FreedSpan:
        """4K chunks as the kernel does; a huge region is only taken down
        once none of its pages is allocated (the range tree already marks
        the span free)."""
        st: _Regions = arena.priv
        span = FreedSpan(pgoff, n)
        end = pgoff + n
        p = pgoff
        while p < end:
            r = p >> HPAGE_ORDER
            lo = r << HPAGE_ORDER
            q = min(end, lo + HPAGE_PAGES)
            head = st.head.get(r)
            if head is None:
                part = arena.unmap_4k(cpu, p, q - p, per_page)
                span.pfns += part.pfns
                span.kranges += part.kranges
            elif arena.rt.free_in(lo, HPAGE_PAGES) == HPAGE_PAGES:
                ka = arena.kaddr(lo)
                arena.pt.vmap.clear(ka, HPAGE_SIZE)
                span.blocks.append((head, HPAGE_ORDER))
                span.kranges.append((ka, ka + HPAGE_SIZE))
                del st.head[r]
                st.dirty.difference_update(range(lo, lo + HPAGE_PAGES))
                arena.metrics.inc("arena.huge_unmaps")
            p = q
        if span.kranges and not per_page:
            # one flush per free, as the Dec 2025 kernel does
            span.kranges = [
                (min(a for a, _ in span.kranges), max(b for _, b in span.kranges))
            ]
        return span

    # -- teardown and checks -------------------------------------------------------
    def teardown(self, arena: BpfArena, span: FreedSpan) -> None:
        st: _Regions = arena.priv
        span.blocks += [(head, HPAGE_ORDER) for head in st.head.values()]
        st.head.clear()
        st.dirty.clear()

    def check(self, arena: BpfArena) -> set[int]:
        st: _Regions = arena.priv
        buddy = arena.pa.buddy
        out: set[int] = set()
        for r, head in st.head.items():
            lo = r << HPAGE_ORDER
            mp = arena.pt.lookup(arena.kaddr(lo))
            if mp is None or mp.shift != 21 or mp.pfn != head:
                raise SimulationError(f"arena region {r}: PMD {mp}")
            if buddy.allocated.get(head) != HPAGE_ORDER:
                raise SimulationError(f"arena region {r}: head {head:#x} not allocated")
            if any(p in arena.pfn for p in range(lo, lo + HPAGE_PAGES)):
                raise SimulationError(f"arena region {r}: 4K pages inside")
            out.update(range(head, head + HPAGE_PAGES))
        return out
