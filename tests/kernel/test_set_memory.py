"""arch/x86 CPA: set_memory_*() on vmalloc'd pages and the direct map."""

import pytest

from simcore.constants import PAGE_SIZE, PMD_SIZE
from simcore.errors import SimulationError
from simcore.kernel.page_alloc import PageAlloc
from simcore.kernel.pgtable import (
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    PAGE_KERNEL,
    PAGE_KERNEL_ROX,
    KernelPageTables,
)
from simcore.kernel.set_memory import Cpa
from tests.kernel import make_sim, run

VA = 0xFFFFC90000000000


class Box:
    """A machine with the page allocator, page tables and CPA wired up."""

    def __init__(self, kernel="{preset: latest}", **cpa_kw):
        self.sim = make_sim(kernel=kernel)
        self.pa = PageAlloc(self.sim.kernel)
        self.pt = KernelPageTables(self.sim.kernel, self.pa)
        self.cpa = Cpa(self.sim.kernel, self.pt, **cpa_kw)
        self.c = self.sim.metrics.counters
        self.next_va = VA

    def vmalloc(self, nr, cpu=0, pfns=None):
        """Pages from the buddy mapped at fresh 4K PTEs, as vmalloc does."""
        if pfns is None:
            pfns = run(self.sim, self.pa.alloc_pages_bulk(cpu, nr))
        va = self.next_va
        assert run(self.sim, self.pt.vmap_pages_range(cpu, va, pfns))
        self.next_va += -(-(nr + 1) * PAGE_SIZE // PMD_SIZE) * PMD_SIZE
        return va, pfns

    def do(self, fn, *args):
        t0 = self.sim.env.now
        run(self.sim, fn(*args))
        return self.sim.env.now - t0

    def get(self, name):
        return self.c.get(name, 0)

    def alias(self, pfn):
        return self.pt.lookup(self.pt.page_address(pfn))


def test_first_ro_splits_1g_then_2m_and_a_neighbour_splits_nothing():
    b = Box()
    va, pfns = b.vmalloc(4)
    assert b.alias(pfns[0]).shift == 30
    b.do(b.cpa.set_memory_ro, 0, va, 1)
    assert b.get("directmap.level3_splits") == 1
    assert b.get("directmap.level2_splits") == 1
    assert b.alias(pfns[0]).shift == 12
    assert not b.alias(pfns[0]).flags & _PAGE_RW
    assert b.pt.lookup(va).flags == PAGE_KERNEL & ~_PAGE_RW
    # a second page in the same 2M: already 4K, no new split
    b.do(b.cpa.set_memory_ro, 0, va + PAGE_SIZE, 1)
    assert b.get("directmap.level2_splits") == 1
    assert b.get("directmap.level3_splits") == 1
    # a page in another 2M of the same GiB: one level-2 split only
    far = pfns[0] + 3 * 512
    va2, _ = b.vmalloc(1, pfns=[far])
    b.do(b.cpa.set_memory_ro, 0, va2, 1)
    assert b.get("directmap.level2_splits") == 2
    assert b.get("directmap.level3_splits") == 1
    dm4k, dm2m, dm1g = b.pt.direct.bytes()
    assert dm4k + dm2m + dm1g == b.pa.buddy.total_pages * PAGE_SIZE
    assert dm4k == 2 * PMD_SIZE
    assert b.get("directmap.pagetable_pages") == 3


def test_alias_touch_forces_a_full_flush_even_for_one_page():
    b = Box()
    va, _ = b.vmalloc(1)
    full = b.get("tlb.full_flushes")
    b.do(b.cpa.set_memory_ro, 0, va, 1)
    # two splits (each flush_tlb_all under pgd_lock) + the final full flush
    assert b.get("tlb.full_flushes") == full + 3
    # unchanged PTE: CPA_FLUSHTLB stays clear, no flush at all
    b.do(b.cpa.set_memory_ro, 0, va, 1)
    assert b.get("tlb.full_flushes") == full + 3


def test_nx_is_never_propagated_to_the_direct_map():
    b = Box()
    va, pfns = b.vmalloc(2)
    b.do(b.cpa.set_memory_x, 0, va, 2)
    assert not b.pt.lookup(va).flags & _PAGE_NX
    assert b.alias(pfns[0]).flags == PAGE_KERNEL  # untouched, still 1G NX
    assert b.alias(pfns[0]).shift == 30
    b.do(b.cpa.set_memory_rox, 0, va, 2)
    assert b.pt.lookup(va).flags == PAGE_KERNEL_ROX
    assert b.alias(pfns[1]).flags == PAGE_KERNEL & ~_PAGE_RW  # RO, still NX


@pytest.mark.parametrize(
    ("preset", "pages", "full", "ipis_round"),
    [
        ("6.9", 1, True, True),  # cpa_process_alias() runs: force_flush_all
        ("6.1", 1, False, True),  # checkalias = 0: INVLPG on every CPU
        ("6.1", 34, True, True),  # past tlb_single_page_flush_ceiling
    ],
)
def test_pure_nx_change_flush_by_era(preset, pages, full, ipis_round):
    b = Box(kernel=f"{{preset: '{preset}'}}")
    va, _ = b.vmalloc(pages)
    f0, s0 = b.get("tlb.full_flushes"), b.get("tlb.shootdowns")
    b.do(b.cpa.set_memory_x, 0, va, pages)
    assert b.get("tlb.full_flushes") - f0 == int(full)
    assert b.get("tlb.shootdowns") - s0 == int(ipis_round)
    assert b.get("directmap.level2_splits") == 0


def test_rox_native_vs_ro_then_x_and_the_unmap_aliases_hook():
    for preset, calls in (("latest", 1), ("6.1", 2)):
        seen = []
        b = Box(kernel=f"{{preset: '{preset}'}}")

        def hook(cpu, seen=seen, env=b.sim.env):
            seen.append(cpu)
            yield env.timeout(100)

        b.cpa.vm_unmap_aliases = hook
        va, _ = b.vmalloc(3)
        b.do(b.cpa.set_memory_rox, 2, va, 3)
        assert seen == [2] * calls
        assert b.pt.lookup(va + 2 * PAGE_SIZE).flags == PAGE_KERNEL_ROX


def test_default_unmap_aliases_takes_vmap_purge_lock():
    b = Box()
    va, _ = b.vmalloc(1)
    before = b.sim.machine.lock_stats["vmap_purge_lock"].acquisitions
    b.do(b.cpa.set_memory_nx, 0, va, 1)
    assert b.sim.machine.lock_stats["vmap_purge_lock"].acquisitions == before + 1
    cpa_lock = b.sim.machine.lock_stats["cpa_lock"]
    assert cpa_lock.acquisitions == 1  # NX masked: the alias has nothing to do
    b.do(b.cpa.set_memory_ro, 0, va, 1)
    assert cpa_lock.acquisitions == 1 + 4  # page, alias, a retake per split


def test_pfn_of_callable_picks_the_alias():
    b = Box()
    va, pfns = b.vmalloc(1)
    other = run(b.sim, b.pa.alloc_pages(0, 0)) + 5 * 512
    b.cpa.pfn_of = lambda addr: other
    b.do(b.cpa.set_memory_ro, 0, va, 1)
    assert not b.alias(other).flags & _PAGE_RW
    assert b.alias(pfns[0]).flags & _PAGE_RW


def test_concurrent_splits_of_one_large_page_split_it_once():
    b = Box()
    va, pfns = b.vmalloc(4)
    procs = [
        b.sim.env.process(b.cpa.set_memory_ro(cpu, va + cpu * PAGE_SIZE, 1))
        for cpu in range(4)
    ]
    before = b.pa.buddy.nr_allocated_pages
    b.sim.env.run(until=b.sim.env.all_of(procs))
    assert b.get("directmap.level3_splits") == 1
    assert b.get("directmap.level2_splits") == 1
    # the losers' split pages went back to the buddy
    assert b.pa.buddy.nr_allocated_pages == before + 2
    assert all(not b.alias(p).flags & _PAGE_RW for p in pfns)
    assert b.sim.machine.lock_stats["cpa_lock"].contended > 0
    b.pa.buddy.check()


def test_direct_map_invalid_and_default_noflush():
    b = Box()
    pfn = run(b.sim, b.pa.alloc_pages(0, 0))
    addr = b.pt.page_address(pfn)
    full = b.get("tlb.full_flushes")
    b.do(b.cpa.set_direct_map_invalid_noflush, 0, addr, 1)
    assert b.pt.page_shift(addr) is None
    assert not b.pt.lookup(addr).flags & _PAGE_PRESENT
    # the splits flush (under pgd_lock); nothing else does
    assert b.get("tlb.full_flushes") == full + 2
    b.do(b.cpa.set_direct_map_default_noflush, 0, addr, 1)
    assert b.pt.page_shift(addr) == 12
    assert b.pt.lookup(addr).flags == PAGE_KERNEL
    assert b.get("tlb.full_flushes") == full + 2
    # no collapse without CPA_COLLAPSE
    assert b.get("directmap.level2_collapses") == 0


def test_huge_vmalloc_mapping_is_split_and_collapsed_back():
    for preset, collapses in (("latest", True), ("6.13", False)):
        b = Box(kernel=f"{{preset: '{preset}'}}")
        head = run(b.sim, b.pa.alloc_pages(0, 9))
        va = VA + 10 * PMD_SIZE
        pfns = list(range(head, head + 512))
        run(b.sim, b.pt.vmap_pages_range(0, va, pfns, page_shift=21))
        tables = b.get("mem.pagetable_pages")
        b.do(b.cpa.set_memory_ro, 0, va + 7 * PAGE_SIZE, 1)
        assert b.pt.page_shift(va) == 12  # the PMD leaf was split
        assert b.get("mem.pagetable_pages") == tables + 1
        # vmalloc splits are not direct-map splits; the alias's are
        assert b.get("directmap.level2_splits") == 1
        b.do(b.cpa.set_memory_rox, 0, va, 512)
        assert b.pt.page_shift(va) == (21 if collapses else 12)
        assert b.get("mem.pagetable_pages") == tables + (0 if collapses else 1)
        assert b.pt.lookup(va + 99 * PAGE_SIZE).flags == PAGE_KERNEL_ROX
        assert b.get("directmap.level2_collapses") == 0  # not the primary range
        b.pa.buddy.check()


def test_rox_on_a_split_direct_map_range_collapses_it():
    b = Box()
    head = run(b.sim, b.pa.alloc_pages(0, 9))
    addr = b.pt.page_address(head)
    b.do(b.cpa.set_direct_map_invalid_noflush, 0, addr + 5 * PAGE_SIZE, 1)
    b.do(b.cpa.set_direct_map_default_noflush, 0, addr + 5 * PAGE_SIZE, 1)
    assert b.pt.page_shift(addr) == 12
    used = b.pa.buddy.nr_allocated_pages
    b.do(b.cpa.set_memory_rox, 0, addr, 512)
    assert b.get("directmap.level2_collapses") == 1
    assert b.pt.page_shift(addr) == 21
    assert b.pt.lookup(addr).flags == PAGE_KERNEL_ROX
    assert b.pa.buddy.nr_allocated_pages == used - 1  # the PTE table freed
    assert b.get("directmap.pagetable_pages") == 1  # the GiB's PMD table


def test_a_whole_aligned_large_page_is_changed_in_place():
    b = Box()
    va, pfns = b.vmalloc(1)
    b.do(b.cpa.set_memory_ro, 0, va, 1)  # GiB 0 now has 2M entries
    addr = b.pt.page_address(7 * 512)
    full = b.get("tlb.full_flushes")
    b.do(b.cpa.set_memory_ro, 0, addr, 512)
    assert b.get("directmap.level2_splits") == 1
    m = b.pt.lookup(addr + 100 * PAGE_SIZE)
    assert m.shift == 21 and not m.flags & _PAGE_RW
    # direct-map primary: no alias; 512 pages are past the ceiling
    assert b.get("tlb.full_flushes") == full + 1


def test_zero_pte_is_a_caller_bug():
    b = Box()
    with pytest.raises(SimulationError, match="zero pte"):
        b.do(b.cpa.set_memory_ro, 0, VA + 123 * PMD_SIZE, 1)
