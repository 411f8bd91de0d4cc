"""Kernel page tables: vmalloc-range mappings and the direct map."""

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.constants import PAGE_SIZE, PMD_SIZE
from simcore.errors import SimulationError
from simcore.kernel.page_alloc import PageAlloc
from simcore.kernel.pgtable import (
    _NONE,
    _TABLE,
    PAGE_KERNEL,
    PAGE_KERNEL_ROX,
    DirectMap,
    KernelPageTables,
)
from tests.kernel import make_sim, run

GiB_PAGES = 1 << 18
VMALLOC_START = 0xFFFFC90000000000
MODULES_VADDR = 0xFFFFFFFFA0000000


def recount(d: DirectMap) -> list[int]:
    """direct_pages_count[] recomputed by walking the structure."""
    n = [0, 0, 0]
    for gb in range(-(-d.nr_pages // GiB_PAGES)):
        t = d.pmd.get(gb)
        if t is None:
            if d.gbpages:
                n[2] += 1
            else:
                n[1] += 512
            continue
        for i, e in enumerate(t):
            if e == _TABLE:
                n[0] += int((d.pte[gb * 512 + i] != _NONE).sum())
            elif e != _NONE:
                n[1] += 1
    return n


# -- the direct map ---------------------------------------------------------------------
def test_starts_with_gb_pages_and_maps_a_partial_tail_smaller():
    d = DirectMap(8 * GiB_PAGES)
    assert d.count == [0, 0, 8] and sum(d.bytes()) == 8 << 30
    tail = DirectMap(8 * GiB_PAGES + 3 * 512 + 256)
    assert tail.count == [256, 3, 8]
    assert sum(tail.bytes()) == tail.nr_pages * PAGE_SIZE
    assert tail.lookup_pfn(8 * GiB_PAGES + 3 * 512 + 255).shift == 12
    assert tail.lookup_pfn(8 * GiB_PAGES + 3 * 512 + 256) is None
    two = DirectMap(8 * GiB_PAGES, page_size="2M")
    assert two.count == [0, 8 * 512, 0]
    assert two.lookup_pfn(12345).shift == 21


def test_split_and_collapse_move_the_kernel_counters():
    d = DirectMap(4 * GiB_PAGES)
    pfn = GiB_PAGES + 700
    d.split(pfn, 30, None)
    d.split(pfn, 21, None)
    assert d.splits == [1, 1] and d.count == [512, 511, 3]
    assert d.lookup_pfn(pfn).shift == 12 and d.lookup_pfn(pfn + 512).shift == 21
    assert d.collapse(pfn) != []  # all 512 PTEs still PAGE_KERNEL
    assert d.count == [0, 0, 4] and d.collapses == [1, 1]
    assert d.pmd == {} and d.pte == {}  # back to one implicit 1G leaf


def test_collapse_needs_equal_present_entries():
    d = DirectMap(4 * GiB_PAGES)
    d.split(0, 30, None)
    d.split(0, 21, None)
    d.set_leaf(3, 12, PAGE_KERNEL_ROX)
    assert d.collapse(0) == []
    for p in range(512):
        d.set_leaf(p, 12, PAGE_KERNEL_ROX)
    assert len(d.collapse(0)) == 1  # 2M re-formed; other 2Ms differ: no 1G
    assert d.count == [0, 512, 3] and d.collapses == [1, 0]
    for i in range(1, 512):
        d.set_leaf(i * 512, 21, PAGE_KERNEL_ROX)
    d.split(0, 21, None)
    assert len(d.collapse(0)) == 2  # now the whole GiB agrees
    assert d.count == [0, 0, 4] and d.lookup_pfn(77).flags == PAGE_KERNEL_ROX
    d.split(0, 30, None)
    d.split(0, 21, None)
    d.set_leaf(9, 12, PAGE_KERNEL_ROX & ~1)  # not present
    for p in range(512):
        d.set_leaf(p, 12, PAGE_KERNEL_ROX & ~1)
    assert d.collapse(0) == []


def test_no_gb_collapse_without_gb_pages():
    d = DirectMap(2 * GiB_PAGES, page_size="2M")
    d.split(5, 21, None)
    assert len(d.collapse(5)) == 1
    assert d.count == [0, 1024, 0] and d.collapses == [1, 0]


FLAGS = st.sampled_from([PAGE_KERNEL, PAGE_KERNEL_ROX, PAGE_KERNEL & ~1, 0x5])


@settings(max_examples=80, deadline=None)
@given(
    size=st.sampled_from(["1G", "2M"]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["split", "set", "collapse"]),
            st.integers(0, 3 * GiB_PAGES + 1535),
            FLAGS,
        ),
        max_size=40,
    ),
)
def test_direct_map_always_covers_all_ram_exactly(size, ops):
    d = DirectMap(3 * GiB_PAGES + 1536, page_size=size)
    splits = [0, 0]
    for op, pfn, flags in ops:
        m = d.lookup_pfn(pfn)
        if op == "split" and m.shift > 12:
            d.split(pfn, m.shift, None)
            splits[m.shift == 30] += 1
            assert d.lookup_pfn(pfn).flags == m.flags
        elif op == "set":
            d.set_leaf(pfn, m.shift, flags)
        elif op == "collapse":
            d.collapse(pfn)
        assert sum(d.bytes()) == d.nr_pages * PAGE_SIZE
        assert d.count == recount(d)
    assert d.splits == splits
    if size == "2M":
        assert d.splits[1] == 0 and d.count[2] == 0


def test_direct_map_memory_does_not_grow_with_ram():
    def footprint(pages):
        tracemalloc.start()
        d = DirectMap(pages)
        for k in range(8):
            pfn = k * 3 * GiB_PAGES // 8 + 1000
            d.split(pfn, d.lookup_pfn(pfn).shift, None)
            d.split(pfn, 21, None)
        cur, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return cur

    small, big = footprint(4 * GiB_PAGES), footprint(1024 * GiB_PAGES)
    assert big < 1.5 * small


# -- vmalloc-range mappings ------------------------------------------------------------------
def setup(kernel="{preset: latest}"):
    sim = make_sim(kernel=kernel)
    pa = PageAlloc(sim.kernel)
    return sim, pa, KernelPageTables(sim.kernel, pa)


def tables(sim):
    return sim.metrics.counters["mem.pagetable_pages"]


def test_pte_and_pmd_tables_are_allocated_once_and_never_freed():
    sim, pa, pt = setup()
    base = tables(sim)
    pfns = run(sim, pa.alloc_pages_bulk(0, 4))
    assert run(sim, pt.vmap_pages_range(0, VMALLOC_START, pfns)) is True
    assert tables(sim) == base + 2  # one PMD table, one PTE table
    assert [pt.page_shift(VMALLOC_START + i * PAGE_SIZE) for i in range(5)] == [
        12
    ] * 4 + [None]
    assert pt.pfn_of(VMALLOC_START + 2 * PAGE_SIZE) == pfns[2]
    run(sim, pt.vunmap_range_noflush(0, VMALLOC_START, 4 * PAGE_SIZE))
    assert pt.page_shift(VMALLOC_START) is None
    assert tables(sim) == base + 2
    run(sim, pt.vmap_pages_range(0, VMALLOC_START, pfns))
    assert tables(sim) == base + 2
    # across a 2 MiB boundary: one more PTE table; in the next GiB: + PMD
    more = run(sim, pa.alloc_pages_bulk(0, 8))
    run(sim, pt.vmap_pages_range(0, VMALLOC_START + PMD_SIZE - 4 * PAGE_SIZE, more))
    assert tables(sim) == base + 3
    run(sim, pt.vmap_pages_range(0, VMALLOC_START + (1 << 30), more[:1]))
    assert tables(sim) == base + 5
    # the module area's PMD tables are static: only a PTE table
    run(sim, pt.vmap_pages_range(0, MODULES_VADDR, more[1:2]))
    assert tables(sim) == base + 6
    # every table page came from the buddy allocator, zeroed
    assert pa.buddy.nr_allocated_pages == 4 + 8 + 6
    pa.buddy.check()


def test_huge_pmd_mapping_and_its_fallback():
    sim, pa, pt = setup()
    c = sim.profile.kernel_costs
    head = run(sim, pa.alloc_pages(0, 9))
    run(sim, pa.split_page(0, head, 9))
    pfns = list(range(head, head + 512))
    va = VMALLOC_START + 4 * PMD_SIZE
    base = tables(sim)
    t0 = sim.env.now
    run(sim, pt.vmap_pages_range(0, va, pfns, page_shift=21))
    assert tables(sim) == base + 1  # the PMD table only
    assert sim.env.now - t0 < 512 * c.pte_write_ns.value
    assert pt.page_shift(va + 300 * PAGE_SIZE) == 21
    assert pt.pfn_of(va + 300 * PAGE_SIZE) == head + 300
    run(sim, pt.vunmap_range_noflush(0, va, PMD_SIZE))
    assert pt.page_shift(va) is None
    # a VA that is not 2 MiB aligned gets PTEs
    run(sim, pt.vmap_pages_range(0, va + PAGE_SIZE, pfns[:511], page_shift=21))
    assert pt.page_shift(va + PAGE_SIZE) == 12


def test_huge_pmd_over_an_empty_pte_table_frees_it_with_a_one_page_flush():
    sim, pa, pt = setup()
    va = VMALLOC_START + 8 * PMD_SIZE
    small = run(sim, pa.alloc_pages_bulk(0, 3))
    run(sim, pt.vmap_pages_range(0, va, small))
    run(sim, pt.vunmap_range_noflush(0, va, 3 * PAGE_SIZE))
    base, used = tables(sim), pa.buddy.nr_allocated_pages
    full = sim.metrics.counters["tlb.full_flushes"]
    shoot = sim.metrics.counters["tlb.shootdowns"]
    head = run(sim, pa.alloc_pages(0, 9))
    run(sim, pt.vmap_pages_range(0, va, list(range(head, head + 512)), page_shift=21))
    assert pt.page_shift(va) == 21
    assert tables(sim) == base - 1
    assert pa.buddy.nr_allocated_pages == used + 512 - 1  # the table went back
    assert sim.metrics.counters["tlb.shootdowns"] == shoot + 1
    assert sim.metrics.counters["tlb.full_flushes"] == full


def test_concurrent_first_use_installs_one_table_and_frees_the_loser():
    sim, pa, pt = setup()
    va = VMALLOC_START + 20 * PMD_SIZE
    got = {}

    def mapper(cpu):
        pfns = yield from pa.alloc_pages_bulk(cpu, 2)
        got[cpu] = pfns
        yield from pt.vmap_pages_range(cpu, va + cpu * 2 * PAGE_SIZE, pfns)

    base = tables(sim)
    procs = [sim.env.process(mapper(cpu)) for cpu in range(3)]
    sim.env.run(until=sim.env.all_of(procs))
    assert tables(sim) == base + 2  # one PMD and one PTE table
    assert pa.buddy.nr_allocated_pages == 6 + 2
    for cpu, pfns in got.items():
        assert pt.pfn_of(va + cpu * 2 * PAGE_SIZE + PAGE_SIZE) == pfns[1]
    assert sim.machine.lock_stats["page_table_lock"].acquisitions >= 2


def test_mapping_over_live_ptes_is_a_bug():
    sim, pa, pt = setup()
    pfns = run(sim, pa.alloc_pages_bulk(0, 2))
    run(sim, pt.vmap_pages_range(0, VMALLOC_START, pfns))
    with pytest.raises(SimulationError, match="live PTE"):
        run(sim, pt.vmap_pages_range(0, VMALLOC_START + PAGE_SIZE, pfns[:1]))


def test_direct_map_follows_ram_and_the_knob():
    sim, pa, pt = setup()
    assert pt.direct.nr_pages == pa.buddy.total_pages
    assert pt.page_shift(pt.page_address(1234)) == 30
    assert (
        sim.metrics.counters["directmap.1g_bytes"] == pa.buddy.total_pages * PAGE_SIZE
    )
    sim2, _, pt2 = setup("{preset: latest, direct_map_page: 2M}")
    assert pt2.page_shift(pt2.page_address(1234)) == 21
    assert sim2.metrics.counters["directmap.1g_bytes"] == 0
    assert pt2.page_shift(pt2.page_address(pt2.direct.nr_pages)) is None
