"""The interface every BPF arena strategy implements.

The arena model (:mod:`simcore.kernel.bpf.arena`) follows kernel/bpf/arena.c
step by step and takes the era's locks; at four points it asks the
strategy serving the ``arena`` domain what to do:

- ``populate``: back and map freshly allocated page offsets in the kernel
  view (the kernel: zeroed order-0 pages, one 4K PTE each, in batches of at
  most 1024), with the arena's range-tree lock held;
- ``backing_pfn`` / ``kern_shifts``: which page backs an offset, and at
  which page size a BPF access to it is translated (what the data TLBs see);
- ``unmap``: take a freed span out of the kernel view, under the lock, and
  say which kernel ranges need flushing;
- ``retire``: flush, zap the user view and give the pages back (the kernel:
  at once; mutex era under the lock, spinlock era after it).

The defaults below are the kernel's own design; ``arena_4k`` is exactly
this class. Layout knobs (``kva_align``, ``user_align``,
``prepopulate_ptes``) and ``defer_range_free`` (freed offsets stay reserved
until ``retire`` hands them back) let a strategy change what it must.
Every method that spends time is a SimPy generator taking ``cpu`` first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from simcore.constants import PAGE
from simcore.errors import SimulationError
from simcore.strategies.base import Strategy

if TYPE_CHECKING:
    from simcore.kernel.bpf.arena import BpfArena, FreedSpan


class ArenaStrategy(Strategy):
    domain: ClassVar[str] = "arena"
    # page-table pages the Dec 2025 arena allocates at creation: every
    # level down to the PTE tables (a 2 MiB-leaf design stops at the PMDs)
    prepopulate_ptes: ClassVar[bool] = True
    # alignment of kern_vm_start and of the user VMA
    kva_align: ClassVar[int] = PAGE
    user_align: ClassVar[int] = PAGE
    # keep freed offsets allocated in the range tree until retire()
    defer_range_free: ClassVar[bool] = False

    def init_arena(self, arena: BpfArena) -> object | None:
        """Per-arena state of the strategy (``arena.priv``)."""
        return None

    # -- allocation ------------------------------------------------------------
    def populate(self, cpu: int, arena: BpfArena, pgoff: int, n: int):
        """Back and map [pgoff, pgoff + n); returns the pages mapped."""
        return (yield from arena.populate_4k(cpu, pgoff, n))

    def backing_pfn(self, arena: BpfArena, pgoff: int) -> int | None:
        """vmalloc_to_page() of the offset's kernel address."""
        return arena.pfn.get(pgoff)

    def claim(self, cpu: int, arena: BpfArena, pgoff: int):
        """A user fault found a page backed but free in the range tree:
        allocate it. Never happens when backing follows allocation."""
        raise SimulationError(f"arena pgoff {pgoff} is mapped but free")
        yield

    def kern_shifts(self, arena: BpfArena, pgoffs: np.ndarray) -> np.ndarray:
        """Page shift of the kernel mapping of each offset."""
        return np.full(len(pgoffs), 12, dtype=np.uint8)

    # -- free --------------------------------------------------------------------
    def unmap(
        self, cpu: int, arena: BpfArena, pgoff: int, n: int, per_page: bool
    ) -> FreedSpan:
        return arena.unmap_4k(cpu, pgoff, n, per_page)

    def retire(self, cpu: int, arena: BpfArena, spans: list[FreedSpan], locked: bool):
        """Per span: flush_tlb_kernel_range() of its ranges on all CPUs,
        zap_pages() of the user view; then __free_page() of everything."""
        for s in spans:
            ns = sum(arena.flush_kernel(cpu, a, b) for a, b in s.kranges)
            if ns:
                yield arena.env.timeout(ns)
            yield from arena.zap(cpu, s, locked)
        yield from arena.give_back(cpu, spans)

    def pending_in(self, arena: BpfArena, pgoff: int, n: int) -> int:
        """Pages of [pgoff, pgoff + n) freed but still reserved by retire."""
        return 0

    # -- teardown and checks -------------------------------------------------------
    def drain(self, cpu: int, arena: BpfArena):
        """Finish whatever retire() left pending (arena_map_free())."""
        return
        yield

    def teardown(self, arena: BpfArena, span: FreedSpan) -> None:
        """Add pages only the strategy knows of to the teardown span."""

    def check(self, arena: BpfArena) -> set[int]:
        """Check the strategy's own state; return the pfns it maps or holds
        besides ``arena.pfn`` (the caller checks they are disjoint)."""
        return set()
