"""perm_alloc (Rick Edgecombe's RFC, Nov 2020).

Facts checked (exec-memory.md section 8; the RFC's cover letter and x86
back end): pages come from a cache of 2 MiB blocks already removed from
the direct map, one flush per block; allocations are mapped at their final
permission and written through a staging buffer and text_poke(), so a BPF
JIT load needs no all-CPU shootdown ("usually zero") and a module load one
("usually one kernel range shootdown", the ro_after_init change); a free
flushes only if the mapping was executable, and its pages stay unmapped
in the cache; the shrinker maps them back.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from simcore.constants import PAGE
from simcore.kernel.pgtable import PAGE_KERNEL_RO, PAGE_KERNEL_ROX
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


def test_the_first_load_takes_a_block_out_of_the_direct_map():
    sim = make_sim(strategy="perm_alloc")
    st, pt = sim.exec_strategy, sim.pagetables
    l2 = count(sim, "directmap.level2_splits")[0]
    prog = load(sim, 300)
    assert count(sim, "mem.exec.cache_refills") == (1,)
    assert count(sim, "mem.exec.allocated_bytes") == (512 * PAGE,)
    assert count(sim, "directmap.level2_splits") == (l2 + 1,)
    # every page of the block is not present in the direct map, 4K-mapped
    pfn = pt.pfn_of(prog.image.addr)
    block = pfn & ~511
    for p in range(block, block + 512):
        m = pt.lookup(pt.page_address(p))
        assert m.shift == 12 and not m.present
    # the program is mapped read-only and executable from the start
    assert pt.lookup(prog.image.addr).flags == PAGE_KERNEL_ROX
    assert len(st.pages) == 511


def test_bpf_loads_after_the_cache_exists_need_no_shootdown():
    sim = make_sim(machine=SKYLAKE16, strategy="perm_alloc")
    load(sim, 300)
    split0 = splits(sim)
    names = ("tlb.shootdowns", "text_poke.pokes", "tlb.local_flushes")
    for i in range(40):
        shoot0, pokes0, local0 = count(sim, *names)
        load(sim, 200 + 97 * i)
        shoot, pokes, local = count(sim, *names)
        assert shoot == shoot0
        # one text_poke() per page of the staging buffer
        assert pokes - pokes0 == -(-(200 + 97 * i + 136) // PAGE)
        assert local > local0
    assert splits(sim) == split0


def test_free_flushes_once_if_executable_and_keeps_pages_unmapped():
    sim = make_sim(machine=SKYLAKE16, strategy="perm_alloc")
    st, pt = sim.exec_strategy, sim.pagetables
    prog = load(sim, 300)
    pfn = pt.pfn_of(prog.image.addr)
    cached = len(st.pages)
    (shoot,) = count(sim, "tlb.shootdowns")
    run(sim, sim.bpf.prog_free(0, prog))
    assert count(sim, "tlb.shootdowns") == (shoot + 1,)
    assert len(st.pages) == cached + 1 and st.pages[-1] == pfn
    assert not pt.lookup(pt.page_address(pfn)).present
    # a writable object is freed without any flush
    data = alloc_written(sim, "module_data", 3 * PAGE)
    (shoot,) = count(sim, "tlb.shootdowns")
    run(sim, st.free(0, data))
    assert count(sim, "tlb.shootdowns") == (shoot,)


def test_ro_after_init_turns_read_only_with_one_ranged_flush():
    sim = make_sim(machine=SKYLAKE16, strategy="perm_alloc")
    st, pt = sim.exec_strategy, sim.pagetables
    load(sim, 300)
    obj = run(sim, st.alloc(0, 3 * PAGE, "module_ro_after_init"))
    run(sim, st.write(0, obj, 3 * PAGE))
    full, shoot = count(sim, "tlb.full_flushes", "tlb.shootdowns")
    run(sim, st.finalize(0, obj))
    assert count(sim, "tlb.shootdowns", "tlb.full_flushes") == (shoot + 1, full)
    for a in range(obj.addr, obj.addr + 3 * PAGE, PAGE):
        assert pt.lookup(a).flags == PAGE_KERNEL_RO


def test_one_shootdown_per_module_load_none_per_bpf_load():
    # "module load's down to usually one kernel range shootdown, and BPF
    # JIT load's down to usually zero"
    assert shootdowns_per_load("perm_alloc") == (1, 0)
    # the set_memory path: a CPA with its full flush per protected type
    module, bpf = shootdowns_per_load("module_alloc")
    assert module >= 4 and bpf >= 1


def test_the_shrinker_maps_cached_pages_back_and_frees_them():
    sim = make_sim(strategy="perm_alloc")
    st, pt = sim.exec_strategy, sim.pagetables
    progs = [load(sim, 100) for _ in range(3)]
    for p in progs:
        run(sim, sim.bpf.prog_free(0, p))
    pages = list(st.pages)
    assert run(sim, st.shrink(0, 10_000)) == 512
    assert st.pages == [] and count(sim, "mem.exec.allocated_bytes") == (0,)
    assert count(sim, "mem.exec.cache_free_pages") == (0,)
    for p in pages:
        assert pt.lookup(pt.page_address(p)).present
    sim.page_alloc.buddy.check()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_live_objects_never_share_pages(ops):
    sim = exercise("perm_alloc", ops, owns=lambda obj: True)
    st = sim.exec_strategy
    # every page is back in the cache, none lost or doubled
    assert len(set(st.pages)) == len(st.pages)
    assert count(sim, "mem.exec.allocated_bytes") == (len(st.pages) * PAGE,)
