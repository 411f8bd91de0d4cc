"""unmapped_cache (Mike Rapoport's __GFP_UNMAPPED RFC, Mar 2023).

Facts checked (mm/unmapped-alloc.c and the x86 module_alloc() patch of the
series; exec-memory.md section 8): module_alloc() pages come from a buddy
cache of PMD blocks removed from the direct map with one flush each, so
loads stop splitting the direct map once a block is cached, but
set_memory_rox() still flushes every CPU per load; freed pages return to
the cache (merged with their buddies), mapped back by the
VM_FLUSH_RESET_PERMS reset; the shrinker returns blocks to the page
allocator.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from simcore.constants import PAGE
from tests.kernel import make_sim, run
from tests.strategies.exec_checks import (
    OPS,
    SKYLAKE16,
    alloc_written,
    count,
    exercise,
    load,
    shootdowns_per_load,
    splits,
)

# a fragmented machine: module_alloc()'s pages scatter over the direct map
FRAGMENTED = "{preset: latest, fragmentation: 0.9}"


def test_a_refill_unmaps_a_whole_pmd_block_with_one_flush():
    sim = make_sim(machine=SKYLAKE16, strategy="unmapped_cache")
    pt = sim.pagetables
    run(sim, sim.vmalloc.vm_unmap_aliases(0))  # nothing lazy left to purge
    l2, full = count(sim, "directmap.level2_splits", "tlb.full_flushes")
    obj = run(sim, sim.exec_strategy.alloc(0, PAGE, "bpf_prog"))
    assert count(sim, "mem.exec.cache_refills", "mem.exec.cache_free_pages") == (1, 511)
    assert count(sim, "mem.exec.allocated_bytes") == (512 * PAGE,)
    # one 2M direct-map page split (its 1G parent too), flushed three times:
    # each split, then the block's range
    assert count(sim, "directmap.level2_splits") == (l2 + 1,)
    assert count(sim, "tlb.full_flushes") == (full + 3,)
    block = pt.pfn_of(obj.addr) & ~511
    for p in range(block, block + 512):
        assert not pt.lookup(pt.page_address(p)).present


def _split_growth(strategy: str, n: int) -> tuple[int, list[int]]:
    sim = make_sim(machine=SKYLAKE16, kernel=FRAGMENTED, strategy=strategy)
    load(sim, 300)
    s0 = splits(sim)
    per_load = []
    for _ in range(n):
        (before,) = count(sim, "tlb.shootdowns")
        load(sim, 300)
        per_load.append(count(sim, "tlb.shootdowns")[0] - before)
    return splits(sim) - s0, per_load


def test_loads_stop_splitting_the_direct_map_but_still_flush_every_cpu():
    grown, per_load = _split_growth("unmapped_cache", 300)
    assert grown == 0
    # set_memory_rox() still changes the (unmapped) alias: flush_tlb_all()
    assert min(per_load) >= 1
    grown, _ = _split_growth("module_alloc", 300)
    assert grown > 10


def test_shootdowns_per_load_are_module_allocs():
    # the cache removes splits, not the set_memory_*() flushes
    assert shootdowns_per_load("unmapped_cache") == shootdowns_per_load("module_alloc")


def test_freed_pages_return_to_the_cache_and_merge():
    sim = make_sim(strategy="unmapped_cache")
    st, pt = sim.exec_strategy, sim.pagetables
    buddy = sim.page_alloc.buddy
    objs = [alloc_written(sim, "module_text", (1 + i % 3) * PAGE) for i in range(12)]
    pfns = [pt.pfn_of(o.addr) for o in objs]
    zone_free = buddy.nr_free_pages + buddy.nr_pcp_pages
    for o in objs:
        run(sim, st.free(0, o))
    # all back in the cache as one order-9 block, none to the zone
    assert count(sim, "mem.exec.cache_free_pages") == (512,)
    assert [len(f) for f in st.free_area][9] == 1
    assert buddy.nr_free_pages + buddy.nr_pcp_pages == zone_free
    # the experimental patch keeps VM_FLUSH_RESET_PERMS: the reset maps
    # each page back into the direct map before it returns
    assert all(pt.lookup(pt.page_address(p)).present for p in pfns)


def test_the_shrinker_returns_cached_blocks():
    sim = make_sim(strategy="unmapped_cache")
    st, pt = sim.exec_strategy, sim.pagetables
    prog = load(sim, 300)
    pfn = pt.pfn_of(prog.image.addr)
    run(sim, sim.bpf.prog_free(0, prog))
    buddy = sim.page_alloc.buddy
    free0 = buddy.nr_free_pages + buddy.nr_pcp_pages
    assert run(sim, st.shrink(0, 1 << 20)) == 512
    assert count(sim, "mem.exec.allocated_bytes", "mem.exec.cache_free_pages") == (0, 0)
    assert buddy.nr_free_pages + buddy.nr_pcp_pages == free0 + 512
    assert pt.lookup(pt.page_address(pfn & ~511)).present
    buddy.check()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_live_objects_never_share_pages(ops):
    sim = exercise("unmapped_cache", ops, owns=lambda obj: True)
    st = sim.exec_strategy
    refills, cached = count(sim, "mem.exec.cache_refills", "mem.exec.cache_free_pages")
    # every page is back: the cache holds what its refills brought
    assert cached == st.nr_free_pages == 512 * refills
    assert count(sim, "mem.exec.allocated_bytes") == (cached * PAGE,)
