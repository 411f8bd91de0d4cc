"""Kernel page tables (init_mm) on x86-64: vmalloc-range mappings and the
direct map.

Two structures, kept as the kernel keeps them but stored sparsely:

**Outside the direct map** (vmalloc, modules: :class:`VmapPageTable`),
as mm/vmalloc.c builds them:

- ``vmap_pages_range()`` -> ``vmap_range_noflush()``: walk pgd -> p4d ->
  pud -> pmd -> pte, allocating a missing PMD table (one per 1 GiB) or PTE
  table (one per 2 MiB) with ``GFP_PGTABLE_KERNEL`` (zeroed) and installing
  it under ``init_mm.page_table_lock`` (``__pmd_alloc()``,
  ``__pte_alloc_kernel()``; a CPU that loses the race frees its page);
  then one PTE store per 4 KiB page;
- ``vmap_try_huge_pmd()``: with a 2 MiB page shift, a chunk that is exactly
  ``PMD_SIZE``, with virtual and physical address 2 MiB aligned, gets one
  PMD leaf; an (empty) PTE table already there is released by
  ``pmd_free_pte_page()``, which on x86-64 flushes one page on every CPU
  (``flush_tlb_kernel_range(addr, addr + PAGE_SIZE - 1)``) before freeing it;
- ``vunmap_range_noflush()``: clear the PTEs (``vunmap_pte_range``) or the
  PMD leaf (``pmd_clear_huge``); page-table pages are never freed;
- the PUD level of the vmalloc range is preallocated at boot
  (``preallocate_vmalloc_pages()``), and the PMD tables of the top 2 GiB
  (kernel image, modules) are static (``level2_kernel_pgt``,
  ``level2_fixmap_pgt``), so neither is counted.

Every page-table page allocated or freed here moves ``mem.pagetable_pages``.

**The direct map** (:class:`DirectMap`), the linear map of all RAM at
``PAGE_OFFSET``, is in :mod:`simcore.kernel.directmap`; the permission
bits, leaf levels and :class:`Mapping` shared by both structures in
:mod:`simcore.kernel.pgtable_types`. Both are named here too.

The CPA logic that drives splits and collapses is in
:mod:`simcore.kernel.set_memory`.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from simcore.constants import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGES_PER_PMD,
    PMD_SHIFT,
    PTRS_PER_TABLE,
    PUD_SHIFT,
)
from simcore.errors import SimulationError
from simcore.kernel.arm64.mmu import linear_map_page
from simcore.kernel.directmap import DirectMap
from simcore.kernel.page_alloc import node_pages_from_profile
from simcore.kernel.pgtable_types import (
    _NONE,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    _TABLE,
    LEVEL_1G,
    LEVEL_2M,
    LEVEL_4K,
    PAGE_KERNEL,
    PAGE_KERNEL_EXEC,
    PAGE_KERNEL_RO,
    PAGE_KERNEL_ROX,
    Mapping,
)

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.kernel.page_alloc import PageAlloc

# this module's names, and the direct map's and pgtable_types' that
# set_memory.py, the strategies and the tests import from here
__all__ = [
    "FLUSH_ALL",
    "LEVEL_1G",
    "LEVEL_2M",
    "LEVEL_4K",
    "PAGE_KERNEL",
    "PAGE_KERNEL_EXEC",
    "PAGE_KERNEL_RO",
    "PAGE_KERNEL_ROX",
    "START_KERNEL_MAP",
    "_NONE",
    "_PAGE_NX",
    "_PAGE_PRESENT",
    "_PAGE_RW",
    "_TABLE",
    "DirectMap",
    "KernelPageTables",
    "Mapping",
    "PteTable",
    "VmapPageTable",
]

# Documentation/arch/x86/x86_64/mm.rst, 4-level paging, no KASLR:
# "ffff888000000000 ... direct mapping of all physical memory".
# __START_KERNEL_map: kernel image, then the module area, to the top.
START_KERNEL_MAP = 0xFFFFFFFF80000000
# Any range this long is past every flush ceiling: flush_tlb_all().
FLUSH_ALL = (0xFFFF800000000000, 1 << 64)


# ---------------------------------------------------------------------------
# vmalloc / module mappings
# ---------------------------------------------------------------------------
class PteTable:
    """One PTE table: the pfn of each entry (-1: none) and its flags.

    ``array('q')`` and ``bytearray`` rather than numpy: vmalloc maps and
    unmaps a few entries at a time, and slices of these C arrays cost a
    fraction of a numpy slice plus ``.any()`` (same 4.5 KiB per table).
    """

    __slots__ = ("page", "pfns", "flags")

    def __init__(self, page: int | None) -> None:
        self.page = page  # the page-table page itself, when from the buddy
        self.pfns = array("q", _NO_PFNS)
        self.flags = bytearray(_NO_FLAGS)

    def empty(self) -> bool:
        return self.flags.count(_NONE) == PTRS_PER_TABLE


_NO_PFNS = array("q", [-1]) * PTRS_PER_TABLE
_NO_FLAGS = bytes([_NONE]) * PTRS_PER_TABLE


class VmapPageTable:
    """init_mm's tables outside the direct map, keyed by 2 MiB / 1 GiB index."""

    def __init__(self) -> None:
        self.pmd_tables: dict[int, int | None] = {}  # GiB index -> table page
        self.ptes: dict[int, PteTable] = {}  # 2 MiB index -> PTE table
        self.huge: dict[int, tuple[int, int]] = {}  # 2 MiB index -> (pfn, flags)

    def has_pmd_table(self, addr: int) -> bool:
        return addr >= START_KERNEL_MAP or (addr >> PUD_SHIFT) in self.pmd_tables

    def has_pte_table(self, addr: int) -> bool:
        return (addr >> PMD_SHIFT) in self.ptes

    def lookup(self, addr: int) -> Mapping | None:
        idx = addr >> PMD_SHIFT
        h = self.huge.get(idx)
        if h is not None:
            return Mapping(LEVEL_2M, h[0] + ((addr >> PAGE_SHIFT) & 511), h[1])
        t = self.ptes.get(idx)
        if t is None:
            return None
        i = (addr >> PAGE_SHIFT) & 511
        f = t.flags[i]
        return None if f == _NONE else Mapping(LEVEL_4K, t.pfns[i], f)

    def set_ptes(self, addr: int, pfns: Sequence[int], flags: int) -> None:
        """vmap_pte_range(): one PTE per page, the range was unmapped."""
        pos = 0
        while pos < len(pfns):
            a = addr + (pos << PAGE_SHIFT)
            t = self.ptes[a >> PMD_SHIFT]
            i = (a >> PAGE_SHIFT) & 511
            n = min(PTRS_PER_TABLE - i, len(pfns) - pos)
            if t.flags.count(_NONE, i, i + n) != n:
                raise SimulationError(f"vmap over a live PTE at {a:#x}")
            t.pfns[i : i + n] = array("q", pfns[pos : pos + n])
            t.flags[i : i + n] = bytes((flags,)) * n
            pos += n

    def set_huge(self, addr: int, pfn: int, flags: int) -> PteTable | None:
        """pmd_set_huge(); returns the PTE table it replaces, if any."""
        idx = addr >> PMD_SHIFT
        old = self.ptes.pop(idx, None)
        if old is not None and not old.empty():
            raise SimulationError(f"huge vmap over live PTEs at {addr:#x}")
        if idx in self.huge:
            raise SimulationError(f"huge vmap over a live PMD at {addr:#x}")
        self.huge[idx] = (pfn, flags)
        return old

    def clear(self, addr: int, size: int) -> tuple[int, int]:
        """vunmap_range_noflush(); returns (PTE slots walked, PMDs cleared)."""
        end = addr + size
        ptes = pmds = 0
        a = addr
        while a < end:
            idx = a >> PMD_SHIFT
            nxt = min(end, (idx + 1) << PMD_SHIFT)
            if idx in self.huge:
                del self.huge[idx]
                pmds += 1
            else:
                t = self.ptes.get(idx)
                if t is not None:
                    i = (a >> PAGE_SHIFT) & 511
                    j = i + ((nxt - a) >> PAGE_SHIFT)
                    t.flags[i:j] = _NO_FLAGS[: j - i]
                    t.pfns[i:j] = _NO_PFNS[: j - i]
                    ptes += j - i
            a = nxt
        return ptes, pmds

    def set_flags(self, addr: int, shift: int, flags: int) -> None:
        idx = addr >> PMD_SHIFT
        if shift == LEVEL_2M:
            pfn, _ = self.huge[idx]
            self.huge[idx] = (pfn, flags)
        else:
            self.ptes[idx].flags[(addr >> PAGE_SHIFT) & 511] = flags

    def split(self, addr: int, table_page: int | None) -> PteTable:
        """__split_large_page() of a PMD leaf: 512 PTEs, same flags."""
        idx = addr >> PMD_SHIFT
        pfn, flags = self.huge.pop(idx)
        t = PteTable(table_page)
        t.pfns[:] = array("q", range(pfn, pfn + PTRS_PER_TABLE))
        t.flags[:] = bytes((flags,)) * PTRS_PER_TABLE
        self.ptes[idx] = t
        return t

    def collapse(self, addr: int) -> PteTable | None:
        """collapse_pmd_page(): 512 present PTEs, equal flags, contiguous
        pfns from a 2 MiB-aligned one become a PMD leaf. Returns the freed
        table. (collapse_pud_page never applies: vmalloc has no 1G leaves.)"""
        idx = addr >> PMD_SHIFT
        t = self.ptes.get(idx)
        if t is None:
            return None
        first = t.flags[0]
        pfn = t.pfns[0]
        if first == _NONE or not first & _PAGE_PRESENT or pfn % PTRS_PER_TABLE:
            return None
        if t.flags.count(first) != PTRS_PER_TABLE:
            return None
        if t.pfns != array("q", range(pfn, pfn + PTRS_PER_TABLE)):
            return None
        del self.ptes[idx]
        self.huge[idx] = (pfn, first)
        return t


# ---------------------------------------------------------------------------
# the simulated machine's kernel page tables
# ---------------------------------------------------------------------------
def direct_map_page(kernel: Kernel) -> str:
    """The direct (linear) map's leaf size at boot: x86's
    ``kernel.direct_map_page``, arm64's from ``rodata`` (arm64/mmu.py)."""
    k = kernel.knobs
    if kernel.profile.arch != "arm64":
        return k.direct_map_page
    bbml2 = kernel.profile.cpu.bbml2_noabort
    return linear_map_page(k.rodata, k.linear_map_split, bool(bbml2 and bbml2.value))


def pte_set_costs(kernel: Kernel) -> tuple[float, float]:
    """(ns per valid kernel PTE written, ns once per mapping call): x86 and
    arm64 v6.16+ write plain PTEs (arm64 closing the lazy-MMU batch with
    one DSB ISHST + ISB), arm64 before v6.16 adds the barriers to each."""
    c = kernel.profile.kernel_costs
    barrier = c.pte_barrier_ns.value if c.pte_barrier_ns is not None else 0.0
    if kernel.profile.arch != "arm64":
        return c.pte_write_ns.value, 0.0
    if kernel.knobs.pte_barriers == "per_pte":
        return c.pte_write_ns.value + barrier, 0.0
    return c.pte_write_ns.value, barrier


class KernelPageTables:
    """init_mm's page tables on the simulated machine: the structures above
    plus SimPy generators that allocate table pages (through ``page_alloc``
    when given, else charging ``page_alloc_ns`` + ``page_zero_ns``), take
    ``init_mm.page_table_lock`` (reported as ``page_table_lock``) and charge
    ``pte_write_ns`` per entry written. ``pgd_lock`` is here for CPA."""

    def __init__(self, kernel: Kernel, page_alloc: PageAlloc | None = None) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.page_alloc = page_alloc
        m = kernel.machine
        c = kernel.profile.kernel_costs
        self.pte_ns = c.pte_write_ns.value
        # arm64: each valid kernel PTE write is followed by DSB ISHST + ISB
        # before v6.16 (set_ns), or the barriers close the batch (batch_ns)
        self.set_ns, self.batch_ns = pte_set_costs(kernel)
        self.page_ns = c.page_alloc_ns.value
        self.free_ns = self.page_ns * c.page_free_factor.value
        self.zero_ns = c.page_zero_ns.value
        if page_alloc is not None:
            total = page_alloc.buddy.total_pages
        else:
            total = sum(node_pages_from_profile(kernel.profile))
        self.direct = DirectMap(
            total,
            page_size=direct_map_page(kernel),
            metrics=kernel.metrics,
            page_offset=kernel.layout.page_offset,
        )
        self.vmap = VmapPageTable()
        self.ptl = m.spinlock("page_table_lock")
        self.pgd_lock = m.spinlock("pgd_lock")
        self.metrics.counters.setdefault("mem.pagetable_pages", 0)

    # -- lookups (no time) -----------------------------------------------------------
    def lookup(self, addr: int) -> Mapping | None:
        """lookup_address(): the leaf mapping ``addr`` (present or not)."""
        if self.direct.contains(addr):
            return self.direct.lookup_pfn(self.direct.pfn_of(addr))
        return self.vmap.lookup(addr)

    def page_shift(self, addr: int) -> int | None:
        """Size of the present mapping covering ``addr`` (12, 21 or 30), or
        None when nothing is mapped there (what a TLB fill would find)."""
        m = self.lookup(addr)
        return m.shift if m is not None and m.present else None

    def pfn_of(self, addr: int) -> int | None:
        """vmalloc_to_pfn() / __pa(): the page behind ``addr``."""
        m = self.lookup(addr)
        return None if m is None else m.pfn

    def in_direct_map(self, addr: int) -> bool:
        return self.direct.contains(addr)

    def page_address(self, pfn: int) -> int:
        return self.direct.page_address(pfn)

    # -- leaf changes for CPA (no time; set_memory.py charges it) -------------------
    def set_leaf(self, addr: int, shift: int, flags: int) -> None:
        if self.direct.contains(addr):
            self.direct.set_leaf(self.direct.pfn_of(addr), shift, flags)
        else:
            self.vmap.set_flags(addr, shift, flags)

    def split(self, addr: int, shift: int, table_page: int | None) -> None:
        """Install a split table for the large leaf at ``addr``."""
        if self.direct.contains(addr):
            self.direct.split(self.direct.pfn_of(addr), shift, table_page)
        else:
            self.vmap.split(addr, table_page)
            self._tables(+1)

    def collapse(self, addr: int) -> tuple[bool, list[int | None]]:
        """collapse_large_pages() at ``addr``: (whether a PTE table was
        examined, the table pages freed)."""
        if self.direct.contains(addr):
            d = self.direct
            pfn = d.pfn_of(addr)
            t = d.pmd.get(pfn >> 18)
            examined = t is not None and t[(pfn >> 9) & 511] == _TABLE
            return examined, d.collapse(pfn) if examined else []
        examined = self.vmap.has_pte_table(addr)
        old = self.vmap.collapse(addr) if examined else None
        if old is None:
            return examined, []
        self._tables(-1)
        return True, [old.page]

    # -- table pages -------------------------------------------------------------------
    def alloc_table_page(self, cpu: int, *, zero: bool = True):
        """A page for a page table (``GFP_PGTABLE_KERNEL`` zeroes it). The
        return value is the pfn, None without a page allocator, or False
        when the allocation failed."""
        if self.page_alloc is not None:
            pfn = yield from self.page_alloc.alloc_pages(cpu, 0, zero=zero)
            return False if pfn is None else pfn
        yield self.env.timeout(int(self.page_ns + (self.zero_ns if zero else 0)))
        return None

    def free_table_page(self, cpu: int, pfn: int | None):
        if self.page_alloc is not None and pfn is not None:
            yield from self.page_alloc.free_pages(cpu, pfn, 0)
        else:
            yield self.env.timeout(int(self.free_ns))

    def _tables(self, delta: int) -> None:
        self.metrics.inc("mem.pagetable_pages", delta)

    def _install(self, cpu: int, tables: dict, key: int, entry):
        """__pte_alloc_kernel() / __pmd_alloc(): allocate, then install
        ``entry(page)`` at ``tables[key]`` under page_table_lock unless
        another CPU did meanwhile. False: no memory."""
        page = yield from self.alloc_table_page(cpu)
        if page is False:
            return False
        extra = yield from self.ptl.take(cpu)
        lost = key in tables
        if not lost:
            tables[key] = entry(page)
            self._tables(+1)
        yield self.env.timeout(int(self.pte_ns + extra))
        self.ptl.release(cpu)
        if lost:
            yield from self.free_table_page(cpu, page)
        return True

    def pmd_alloc(self, cpu: int, addr: int):
        """__pmd_alloc(): the PMD table covering ``addr``'s GiB, installed
        unless present. False when no page was left."""
        tables = self.vmap.pmd_tables
        gb = addr >> PUD_SHIFT
        return (yield from self._install(cpu, tables, gb, lambda page: page))

    def pte_alloc_kernel(self, cpu: int, addr: int):
        """__pte_alloc_kernel(): the PTE table covering ``addr``'s 2 MiB,
        installed unless present. False when no page was left."""
        tables = self.vmap.ptes
        return (yield from self._install(cpu, tables, addr >> PMD_SHIFT, PteTable))

    # -- mapping -------------------------------------------------------------------------
    def vmap_pages_range(
        self,
        cpu: int,
        addr: int,
        pfns: Sequence[int],
        *,
        page_shift: int = PAGE_SHIFT,
        prot: int = PAGE_KERNEL,
        pre_ns: float = 0.0,
        fast: bool = False,
    ):
        """vmap_pages_range(): map ``pfns`` at ``addr`` (no flush needed: the
        range was flushed before reuse). With ``page_shift`` 21 each 2 MiB
        chunk tries vmap_try_huge_pmd() first. Returns False when a table
        page could not be allocated (the kernel's -ENOMEM). ``pre_ns`` is
        the caller's lock-free work, charged with the first timeout.
        ``fast``: the last of it goes to the CPU's lag (the fast lock model,
        simcore.hw.locks_fast), for the caller to pay."""
        if addr % PAGE_SIZE:
            raise SimulationError(f"vmap at unaligned address {addr:#x}")
        vm = self.vmap
        n = len(pfns)
        pos = 0
        work = pre_ns + self.batch_ns
        lag = self.kernel.machine.lag if fast else None
        while pos < n:
            a = addr + (pos << PAGE_SHIFT)
            if not vm.has_pmd_table(a):
                work = yield from self._catch_up(cpu, work, lag)
                if vm.has_pmd_table(a):
                    continue  # another CPU installed it before this one got here
                if not (yield from self.pmd_alloc(cpu, a)):
                    return False
            chunk = min(PAGES_PER_PMD - ((a >> PAGE_SHIFT) & 511), n - pos)
            if (
                page_shift >= PMD_SHIFT
                and chunk == PAGES_PER_PMD
                and pfns[pos] % PAGES_PER_PMD == 0
            ):
                old = vm.set_huge(a, int(pfns[pos]), prot)
                work += self.set_ns
                if old is not None:
                    # pmd_free_pte_page(): clear, flush one page, free.
                    self._tables(-1)
                    work += self.kernel.machine.flush.kernel_range(
                        cpu, a, a + PAGE_SIZE
                    )
                    yield self.env.timeout(int(work))
                    work = 0.0
                    yield from self.free_table_page(cpu, old.page)
            else:
                if not vm.has_pte_table(a):
                    work = yield from self._catch_up(cpu, work, lag)
                    if vm.has_pte_table(a):
                        continue  # another CPU installed it before this one got here
                    if not (yield from self.pte_alloc_kernel(cpu, a)):
                        return False
                vm.set_ptes(a, pfns[pos : pos + chunk], prot)
                work += chunk * self.set_ns
            pos += chunk
        if lag is not None:
            lag[cpu] += int(work)
        else:
            yield self.env.timeout(int(work))
        return True

    def _catch_up(self, cpu: int, work: float, lag: list[int] | None):
        """Spend the work done so far before a step that other CPUs race
        for (a missing table), so that the table is looked for again when
        this CPU gets to it, as vmap_pte_range()'s pmd_none() test is made
        (the fast lock model's lag goes with it)."""
        ns = int(work)
        if lag is not None:
            ns += lag[cpu]
            lag[cpu] = 0
        yield self.env.timeout(ns)
        return 0.0

    def map_at_boot(
        self,
        addr: int,
        size: int,
        pfns: Sequence[int] | None,
        take_page: Callable[[], int | None],
        *,
        huge: bool = False,
        prot: int = PAGE_KERNEL,
    ) -> int:
        """What a mapping made before the run left in init_mm (a captured
        host's areas), installed without time or locks: the tables
        vmap_range_noflush() allocates on its walk, then one PTE per entry
        of ``pfns`` from ``addr``. ``pfns`` None installs the tables of
        ``[addr, addr + size)`` alone, as a lazily freed area leaves them
        (vunmap never frees page-table pages). With ``huge``, a 2 MiB chunk
        whose virtual and physical addresses are both 2 MiB aligned gets a
        PMD leaf, as vmap_try_huge_pmd() gives it. ``take_page()`` gives
        each new table page. Returns the table pages added."""
        vm = self.vmap
        n = (size >> PAGE_SHIFT) if pfns is None else len(pfns)
        added = pos = 0
        while pos < n:
            a = addr + (pos << PAGE_SHIFT)
            if not vm.has_pmd_table(a):
                vm.pmd_tables[a >> PUD_SHIFT] = take_page()
                added += 1
            chunk = min(PAGES_PER_PMD - ((a >> PAGE_SHIFT) & 511), n - pos)
            if (
                huge
                and pfns is not None
                and chunk == PAGES_PER_PMD
                and pfns[pos] % PAGES_PER_PMD == 0
                and pfns[pos + chunk - 1] == pfns[pos] + chunk - 1
                and not vm.has_pte_table(a)
            ):
                vm.set_huge(a, int(pfns[pos]), prot)
            else:
                if not vm.has_pte_table(a) and (a >> PMD_SHIFT) not in vm.huge:
                    vm.ptes[a >> PMD_SHIFT] = PteTable(take_page())
                    added += 1
                if pfns is not None:
                    vm.set_ptes(a, pfns[pos : pos + chunk], prot)
            pos += chunk
        self._tables(added)
        return added

    def vunmap_range_noflush(self, cpu: int, addr: int, size: int):
        """vunmap_range_noflush(): clear PTEs / PMD leaves, keep the tables,
        no flush (the caller or the lazy purge flushes)."""
        yield self.env.timeout(int(self.vunmap_ns(addr, size)))

    def vunmap_ns(self, addr: int, size: int) -> float:
        """vunmap_range_noflush() as a plain step (it takes no lock): clear
        the entries, return the ns for the caller to spend."""
        ptes, pmds = self.vmap.clear(addr, size)
        return (ptes + pmds) * self.pte_ns
