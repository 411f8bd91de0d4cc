"""The direct map: the linear map of all RAM at ``PAGE_OFFSET``, as
arch/x86/mm/init_64.c lays it out at boot and arch/x86/mm/pat/set_memory.c
splits and collapses it.

Kernel functions modelled: ``init_memory_mapping()`` (the boot layout, a
partial last GiB in 2M then 4K pages, page size from
``probe_page_size_mask()``), ``__split_large_page()`` with
``split_page_count()``, ``collapse_large_pages()`` (``collapse_pmd_page()``,
``collapse_pud_page()``) with ``collapse_page_count()``, and the direct-map
side of ``lookup_address()``, ``__va()`` / ``page_address()`` and ``__pa()``.

**The direct map** (:class:`DirectMap`), the linear map of all RAM at
``PAGE_OFFSET``: x86 maps it with 1 GiB pages when the CPU has them and
``direct_gbpages`` is on (``probe_page_size_mask()``), else with 2 MiB
pages (``kernel.direct_map_page``). A whole GiB that was never split is
one implicit entry; only split regions get tables (512 one-byte entries per
table), and an entry's permission is stored only where it differs from
``PAGE_KERNEL``. ``direct_pages_count[]`` is kept as
``split_page_count()`` and ``collapse_page_count()`` in
arch/x86/mm/pat/set_memory.c keep it, and is published as ``directmap.4k_bytes`` / ``2m_bytes`` / ``1g_bytes`` (/proc/
meminfo ``DirectMap4k/2M/1G``); splits and collapses count
``directmap.level{2,3}_splits`` / ``_collapses`` (/proc/vmstat). Split
tables are plain ``alloc_pages(GFP_KERNEL, 0)`` pages, not constructed page
tables, so /proc/meminfo ``PageTables`` does not see them: they are counted
in ``directmap.pagetable_pages``. The boot-time splits around the kernel
image, the ISA hole and firmware ranges are not modelled, unless a
/proc/meminfo capture gives the host's split (:meth:`DirectMap.seed_split`).

The CPA logic that drives splits and collapses is in
:mod:`simcore.kernel.set_memory`; the page tables of the vmalloc range, and
:class:`~simcore.kernel.pgtable.KernelPageTables` which holds both, in
:mod:`simcore.kernel.pgtable`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simcore.constants import (
    PAGE_SHIFT,
    PAGES_PER_PMD,
    PAGES_PER_PUD,
    PMD_SHIFT,
    PTRS_PER_TABLE,
    PUD_SHIFT,
)
from simcore.errors import SimulationError
from simcore.kernel.pgtable_types import (
    _NONE,
    _PAGE_PRESENT,
    _TABLE,
    LEVEL_1G,
    LEVEL_2M,
    LEVEL_4K,
    PAGE_KERNEL,
    Mapping,
)
from simcore.layout import X86_64
from simcore.metrics.registry import Metrics


# ---------------------------------------------------------------------------
# the direct map
# ---------------------------------------------------------------------------
class DirectMap:
    """The linear map of ``nr_pages`` of RAM, default leaf size 1G or 2M,
    or 4K: arm64 with ``rodata=full`` maps it page by page from boot
    (``map_mem()`` passes NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS,
    arch/arm64/mm/mmu.c), so nothing is ever split. A 4K-mapped map keeps
    a 2 MiB region's PTE flags only once one of them changed."""

    def __init__(
        self,
        nr_pages: int,
        *,
        page_size: str = "1G",
        metrics: Metrics | None = None,
        page_offset: int = X86_64.page_offset,
    ) -> None:
        if page_size not in ("1G", "2M", "4K"):
            raise SimulationError(f"direct map page size {page_size!r}: 1G, 2M or 4K")
        self.nr_pages = nr_pages
        self.page_offset = page_offset
        self.gbpages = page_size == "1G"
        self.pages_only = page_size == "4K"
        self.metrics = metrics
        self.full_gb = nr_pages // PAGES_PER_PUD  # GiBs wholly backed by RAM
        self.pud: dict[int, int] = {}  # 1G leaves whose flags are not default
        self.pmd: dict[int, np.ndarray] = {}  # GiB -> 512 PMD entries
        self.pte: dict[int, np.ndarray] = {}  # 2 MiB index -> 512 PTE flags
        self.table_pfn: dict[tuple[int, int], int | None] = {}
        self.count = [0, 0, 0]  # direct_pages_count[PG_LEVEL_4K, 2M, 1G]
        self.splits = [0, 0]  # level2 (2M->4K), level3 (1G->2M)
        self.collapses = [0, 0]
        if self.pages_only:
            self.count[0] = nr_pages
            self._publish()
            return
        if self.gbpages:
            self.count[2] = self.full_gb
        else:
            self.count[1] = self.full_gb * PTRS_PER_TABLE
        # init_memory_mapping() maps a partial last GiB with 2M then 4K pages.
        tail = nr_pages - self.full_gb * PAGES_PER_PUD
        if tail:
            t = np.full(PTRS_PER_TABLE, _NONE, dtype=np.uint8)
            n2m, n4k = divmod(tail, PAGES_PER_PMD)
            t[:n2m] = PAGE_KERNEL
            self.count[1] += n2m
            if n4k:
                t[n2m] = _TABLE
                pte = np.full(PTRS_PER_TABLE, _NONE, dtype=np.uint8)
                pte[:n4k] = PAGE_KERNEL
                self.pte[self.full_gb * PTRS_PER_TABLE + n2m] = pte
                self.count[0] += n4k
            self.pmd[self.full_gb] = t
        self._publish()

    # -- addresses ---------------------------------------------------------------
    def contains(self, addr: int) -> bool:
        base = self.page_offset
        return base <= addr < base + (self.nr_pages << PAGE_SHIFT)

    def page_address(self, pfn: int) -> int:
        """page_address() / __va(): where a pfn sits in the direct map."""
        return self.page_offset + (pfn << PAGE_SHIFT)

    def pfn_of(self, addr: int) -> int:
        """__pa(addr) >> PAGE_SHIFT for a direct-map address."""
        return (addr - self.page_offset) >> PAGE_SHIFT

    # -- lookup ------------------------------------------------------------------
    def lookup_pfn(self, pfn: int) -> Mapping | None:
        if not 0 <= pfn < self.nr_pages:
            return None
        if self.pages_only:
            ptes = self.pte.get(pfn >> 9)
            f = PAGE_KERNEL if ptes is None else int(ptes[pfn & 511])
            return None if f == _NONE else Mapping(LEVEL_4K, pfn, f)
        gb = pfn >> 18
        t = self.pmd.get(gb)
        if t is None:
            if self.gbpages:
                return Mapping(LEVEL_1G, pfn, self.pud.get(gb, PAGE_KERNEL))
            return Mapping(LEVEL_2M, pfn, PAGE_KERNEL)
        e = int(t[(pfn >> 9) & 511])
        if e == _TABLE:
            f = int(self.pte[pfn >> 9][pfn & 511])
            return None if f == _NONE else Mapping(LEVEL_4K, pfn, f)
        return None if e == _NONE else Mapping(LEVEL_2M, pfn, e)

    def _pmd_table(self, gb: int) -> np.ndarray:
        """The PMD table of a GiB, materialising an implicit 2M-mapped one."""
        t = self.pmd.get(gb)
        if t is None:
            if self.gbpages:
                raise SimulationError(f"direct map GiB {gb} is a 1G leaf")
            t = self.pmd[gb] = np.full(PTRS_PER_TABLE, PAGE_KERNEL, dtype=np.uint8)
        return t

    # -- changes -----------------------------------------------------------------
    def set_leaf(self, pfn: int, shift: int, flags: int) -> None:
        """Write the leaf at ``shift`` covering ``pfn`` (set_pte_atomic or
        __set_pmd_pte on a large page kept whole)."""
        gb = pfn >> 18
        if shift == LEVEL_1G:
            if flags == PAGE_KERNEL:
                self.pud.pop(gb, None)
            else:
                self.pud[gb] = flags
        elif shift == LEVEL_2M:
            self._pmd_table(gb)[(pfn >> 9) & 511] = flags
        elif self.pages_only:
            ptes = self.pte.get(pfn >> 9)
            if ptes is None:
                ptes = self.pte[pfn >> 9] = np.full(
                    PTRS_PER_TABLE, PAGE_KERNEL, np.uint8
                )
            ptes[pfn & 511] = flags
        else:
            self.pte[pfn >> 9][pfn & 511] = flags

    def split(self, pfn: int, shift: int, table_pfn: int | None) -> None:
        """__split_large_page(): 512 entries of the next size, each with the
        large page's permissions; split_page_count(level)."""
        gb = pfn >> 18
        if shift == LEVEL_1G:
            flags = self.pud.pop(gb, PAGE_KERNEL)
            self.pmd[gb] = np.full(PTRS_PER_TABLE, flags, dtype=np.uint8)
            self.table_pfn[(LEVEL_1G, gb)] = table_pfn
            self.count[2] -= 1
            self.count[1] += PTRS_PER_TABLE
            self.splits[1] += 1
            self._event("directmap.level3_splits")
        else:
            t = self._pmd_table(gb)
            i = (pfn >> 9) & 511
            flags = int(t[i])
            t[i] = _TABLE
            self.pte[pfn >> 9] = np.full(PTRS_PER_TABLE, flags, dtype=np.uint8)
            self.table_pfn[(LEVEL_2M, pfn >> 9)] = table_pfn
            self.count[1] -= 1
            self.count[0] += PTRS_PER_TABLE
            self.splits[0] += 1
            self._event("directmap.level2_splits")
        self._publish(tables=+1)

    def collapse(self, pfn: int) -> list[int | None]:
        """collapse_large_pages(): re-form the 2M page around ``pfn`` if its
        512 PTEs are present with equal flags (collapse_pmd_page), then the
        1G page if all 512 PMDs are present 2M leaves with equal flags and
        GB pages are on (collapse_pud_page). Returns the freed tables."""
        idx = pfn >> 9
        gb = idx >> 9
        t = self.pmd.get(gb)
        if t is None or t[idx & 511] != _TABLE:
            return []
        pte = self.pte[idx]
        first = int(pte[0])
        if first & (_TABLE | _NONE) or not first & _PAGE_PRESENT:
            return []
        if (pte != first).any():
            return []
        t[idx & 511] = first
        del self.pte[idx]
        freed = [self.table_pfn.pop((LEVEL_2M, idx), None)]
        self.count[0] -= PTRS_PER_TABLE
        self.count[1] += 1
        self.collapses[0] += 1
        self._event("directmap.level2_collapses")
        lead = int(t[0])
        if (
            self.gbpages
            and gb < self.full_gb
            and lead & _PAGE_PRESENT
            and not lead & (_TABLE | _NONE)
            and (t == lead).all()
        ):
            del self.pmd[gb]
            if lead != PAGE_KERNEL:
                self.pud[gb] = lead
            freed.append(self.table_pfn.pop((LEVEL_1G, gb), None))
            self.count[1] -= PTRS_PER_TABLE
            self.count[2] += 1
            self.collapses[1] += 1
            self._event("directmap.level3_collapses")
        elif not self.gbpages and gb < self.full_gb and (t == PAGE_KERNEL).all():
            # An all-default table of a 2M-mapped GiB is the implicit state.
            del self.pmd[gb]
        self._publish(tables=-len(freed))
        return freed

    # -- boot state ------------------------------------------------------------------
    def set_gbpages(self, on: bool) -> None:
        """probe_page_size_mask() as a captured host decided it: map every
        whole GiB with one 1G leaf, or with 512 2M leaves. Before any split."""
        if on == self.gbpages:
            return
        if (
            self.splits != [0, 0]
            or self.pud
            or len(self.pmd) > (self.nr_pages % PAGES_PER_PUD > 0)
        ):
            raise SimulationError("direct map page size changed after boot")
        self.gbpages = on
        moved = self.full_gb * PTRS_PER_TABLE
        self.count[1] += -moved if on else moved
        self.count[2] = self.full_gb if on else 0
        self._publish()

    def seed_split(
        self,
        nr_gb: int,
        nr_4k: int,
        rng: np.random.Generator,
        take_table: Callable[[], int | None],
    ) -> tuple[int, int]:
        """The split a captured host's direct map had (/proc/meminfo
        DirectMap4k/2M/1G): ``nr_gb`` whole GiBs mapped with 2M leaves
        (with GB pages on), then ``nr_4k`` 2 MiB regions among the 2M
        leaves mapped with 4K ones, each picked uniformly at random
        (estimate: on the host they follow the pages CPA changed, which the
        capture does not say). Split tables take pages from ``take_table``;
        the vmstat split counters are not moved, since they count splits
        after boot and the run's are counted from zero. Returns the GiBs
        and regions split, capped by what the machine has."""
        gbs: list[int] = []
        if self.gbpages:
            nr_gb = min(nr_gb, self.full_gb)
            gbs = sorted(int(g) for g in rng.choice(self.full_gb, nr_gb, replace=False))
            for gb in gbs:
                self.pmd[gb] = np.full(PTRS_PER_TABLE, PAGE_KERNEL, dtype=np.uint8)
                self.table_pfn[(LEVEL_1G, gb)] = take_table()
            self.count[2] -= len(gbs)
            self.count[1] += len(gbs) * PTRS_PER_TABLE
            pool = np.array(gbs, dtype=np.int64)[:, None] * PTRS_PER_TABLE
            cands = (pool + np.arange(PTRS_PER_TABLE)).ravel()
        else:
            cands = np.arange(self.full_gb * PTRS_PER_TABLE, dtype=np.int64)
        tail = self.pmd.get(self.full_gb)
        if tail is not None:  # the partial last GiB's 2M leaves
            lead = np.flatnonzero(tail == PAGE_KERNEL) + self.full_gb * PTRS_PER_TABLE
            cands = np.concatenate([cands, lead])
        nr_4k = min(nr_4k, len(cands))
        picked = sorted(int(i) for i in rng.choice(cands, nr_4k, replace=False))
        for idx in picked:
            t = self._pmd_table(idx >> 9)
            t[idx & 511] = _TABLE
            self.pte[idx] = np.full(PTRS_PER_TABLE, PAGE_KERNEL, dtype=np.uint8)
            self.table_pfn[(LEVEL_2M, idx)] = take_table()
        self.count[1] -= len(picked)
        self.count[0] += len(picked) * PTRS_PER_TABLE
        self._publish(tables=len(gbs) + len(picked))
        return len(gbs), len(picked)

    # -- counters ------------------------------------------------------------------
    def bytes(self) -> tuple[int, int, int]:
        """DirectMap4k, DirectMap2M, DirectMap1G in bytes."""
        return (
            self.count[0] << PAGE_SHIFT,
            self.count[1] << PMD_SHIFT,
            self.count[2] << PUD_SHIFT,
        )

    def nr_tables(self) -> int:
        return len(self.table_pfn)

    def _event(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(name)

    def _publish(self, tables: int = 0) -> None:
        m = self.metrics
        if m is None:
            return
        b4, b2, b1 = self.bytes()
        m.counters["directmap.4k_bytes"] = b4
        m.counters["directmap.2m_bytes"] = b2
        m.counters["directmap.1g_bytes"] = b1
        if tables:
            m.inc("directmap.pagetable_pages", tables)
