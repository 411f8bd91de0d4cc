"""bpf_prog_pack (kernel/bpf/core.c, v6.0+): chunks of shared 4K-mapped packs.

Facts checked (exec-memory.md section 3): a 500-byte program takes nine
64-byte chunks, so about 3,600 fit in one 2 MiB pack; a load after the pack
exists costs a mutex, a bitmap search and a text_poke_copy() with local
flushes only; a freed program is refilled with INT3; an empty pack is
freed; programs larger than a pack get an allocation of their own.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from simcore.constants import PAGE
from simcore.kernel.pgtable import PAGE_KERNEL_RO, PAGE_KERNEL_ROX
from simcore.strategies.bpf_prog_pack import (
    BPF_HDR_SIZE,
    BPF_PROG_CHUNK_SIZE,
    FreeRuns,
    PackImage,
    pack_image_size,
)
from tests.kernel import make_sim, run
from tests.strategies.exec_checks import (
    PMD,
    assert_pages_returned,
    assert_spans_disjoint,
    count,
    exec_mem,
    load,
    splits,
    unload,
)

PACKS = ["bpf_prog_pack", "bpf_prog_pack_2m"]


def test_image_size_is_the_kernels_chunk_rounding():
    # round_up(proglen + sizeof(header) + 16, 64): 500 B -> 9 chunks
    assert pack_image_size(500) == 576
    assert pack_image_size(40) == 64
    assert pack_image_size(41) == 128
    sim = make_sim(strategy="bpf_prog_pack")
    assert sim.exec_strategy.bpf_image_size(500) == 576
    # about 3,600 such programs per 2 MiB pack
    assert PMD // 576 == 3640


@pytest.mark.parametrize("strategy", PACKS)
def test_loads_after_the_pack_exists_are_local_flushes_only(strategy):
    sim = make_sim(machine="{profile: skylake-sp, cpus: 16}", strategy=strategy)
    load(sim, 300)
    names = ("tlb.shootdowns", "tlb.ipis", "text_poke.pokes", "tlb.local_flushes")
    shoot0, ipis0, pokes0, local0 = count(sim, *names)
    split0 = splits(sim)
    progs = [load(sim, 300 + 37 * i) for i in range(50)]
    shoot, ipis, pokes, local = count(sim, *names)
    assert (shoot, ipis) == (shoot0, ipis0)
    assert splits(sim) == split0
    # one text_poke_copy() per load, each at least one local flush
    assert pokes - pokes0 >= 50 and local - local0 >= 50
    # frees refill with INT3 through text_poke_set(), still no IPIs while
    # the pack stays
    for p in progs:
        unload(sim, p)
    assert count(sim, "tlb.shootdowns")[0] == shoot0
    assert count(sim, "text_poke.pokes")[0] - pokes >= 50
    assert sim.exec_strategy.packs


def test_the_first_load_creates_the_pack_with_one_rox_change():
    sim = make_sim(strategy="bpf_prog_pack")
    load(sim, 300)
    st = sim.exec_strategy
    (pack,) = st.packs
    assert pack.area.nr_pages == PMD // PAGE and pack.area.page_shift == 12
    assert sim.metrics.hists["set_memory_rox"].n == 1
    # the whole pack is read-only and executable, its alias read-only
    pt = sim.pagetables
    for addr in (pack.ptr, pack.ptr + PMD - PAGE):
        assert pt.lookup(addr).flags == PAGE_KERNEL_ROX
    alias = pt.lookup(pt.page_address(pack.area.pages[7]))
    assert alias.flags == PAGE_KERNEL_RO


def test_pack_size_follows_the_numa_nodes():
    # BPF_PROG_PACK_SIZE = PMD_SIZE * num_possible_nodes()
    sim = make_sim(machine="{profile: skylake-sp, cpus: 8}", strategy="bpf_prog_pack")
    assert sim.exec_strategy.pack_size == 2 * PMD
    load(sim, 100)
    assert sim.exec_strategy.packs[0].area.nr_pages == 2 * PMD // PAGE


@pytest.mark.parametrize(("preset", "shift"), [("6.9", 12), ("latest", 21)])
def test_images_follow_the_mapping_the_pack_ends_up_with(preset, shift):
    """The pack is vmalloc'ed with 4K pages; from v6.15 set_memory_rox()
    passes CPA_COLLAPSE, which gives a pack of physically contiguous,
    aligned pages a 2M leaf again: the images must report what maps them."""
    sim = make_sim(strategy="bpf_prog_pack", kernel=f"{{preset: '{preset}'}}")
    prog = load(sim, 300)
    pack = sim.exec_strategy.packs[0]
    assert pack.area.page_shift == 12
    assert sim.pagetables.page_shift(pack.ptr) == shift
    assert prog.image.page_shift == shift


@pytest.mark.parametrize("strategy", PACKS)
def test_image_placement_inside_its_chunks(strategy):
    sim = make_sim(strategy=strategy)
    for proglen in (1, 40, 41, 500, 3000):
        prog = load(sim, proglen)
        img = prog.image.handle
        assert isinstance(img, PackImage)
        assert img.size == pack_image_size(proglen) == prog.charged
        off = prog.image.addr - img.ptr - BPF_HDR_SIZE
        # random start inside the first chunk, on the JIT's alignment
        assert 0 <= off < BPF_PROG_CHUNK_SIZE - BPF_HDR_SIZE and off % 4 == 0
        assert prog.image.addr + proglen <= img.ptr + img.size
        assert prog.image.size == proglen
        assert (img.ptr - img.pack.ptr) % BPF_PROG_CHUNK_SIZE == 0


def test_waste_a_handful_of_programs_leave_most_of_a_pack_unused():
    sim = make_sim(strategy="bpf_prog_pack")
    for n in (120, 300, 500, 900, 64):
        load(sim, n)
    c = sim.metrics.counters
    assert c["mem.exec.allocated_bytes"] == PMD
    assert c["mem.exec.requested_bytes"] == 120 + 300 + 500 + 900 + 64
    assert c["mem.exec.waste_bytes"] > 0.99 * PMD


def test_waste_with_thousands_falls_to_the_chunk_rounding():
    """3,600 programs of 500 B (nine chunks each) nearly fill one pack:
    what is wasted per program is the chunk rounding plus under 64 B."""
    sim = make_sim(strategy="bpf_prog_pack")
    n, proglen = 3600, 500
    for _ in range(n):
        load(sim, proglen)
    c = sim.metrics.counters
    assert c["mem.exec.regions"] == 1
    rounding = pack_image_size(proglen) - proglen
    per_prog = c["mem.exec.waste_bytes"] / n
    assert rounding <= per_prog < rounding + 64


def test_a_program_larger_than_a_pack_gets_its_own_area():
    sim = make_sim(strategy="bpf_prog_pack")
    big = PMD + 5000
    prog = load(sim, big)
    img = prog.image.handle
    assert img.pack is None and img.area is not None
    assert img.area.nr_pages * PAGE == -(-pack_image_size(big) // PAGE) * PAGE
    assert sim.metrics.counters["mem.exec.oversize_allocs"] == 1
    assert not sim.exec_strategy.packs
    unload(sim, prog)
    assert exec_mem(sim) == (0, 0, 0)


@pytest.mark.parametrize(
    ("proglen", "kind"), [(500, "slab"), (20_000, "pages"), (5 << 20, "vmalloc")]
)
def test_the_rw_shadow_is_kvmalloced(proglen, kind):
    """kvmalloc(): slab up to 8 KiB, whole pages up to KMALLOC_MAX_SIZE
    (4 MiB), vmalloc beyond; kvfree()d at finalize."""
    sim = make_sim(strategy="bpf_prog_pack")
    st = sim.exec_strategy
    obj = run(sim, st.alloc(0, st.bpf_image_size(proglen), "bpf_prog"))
    assert obj.handle.shadow.kind == kind
    run(sim, st.finalize(0, obj))
    assert obj.handle.shadow is None
    run(sim, st.free(0, obj))
    assert exec_mem(sim) == (0, 0, 0)


@pytest.mark.parametrize("strategy", PACKS)
def test_an_empty_pack_is_freed(strategy):
    sim = make_sim(strategy=strategy)
    a, b = load(sim, 200), load(sim, 4000)
    assert exec_mem(sim)[1:] == (PMD, 1)
    unload(sim, a)
    assert sim.exec_strategy.packs
    unload(sim, b)
    assert not sim.exec_strategy.packs
    assert exec_mem(sim) == (0, 0, 0)
    assert sim.metrics.counters["mem.exec.region_frees"] == 1
    # the region is gone from the page tables
    assert sim.pagetables.page_shift(a.image.handle.ptr) is None


def test_module_memory_is_served_as_module_alloc_serves_it():
    sim = make_sim(strategy="bpf_prog_pack")
    st = sim.exec_strategy
    obj = run(sim, st.alloc(0, 3 * PAGE, "module_text"))
    assert not isinstance(obj.handle, PackImage) and obj.footprint == 3 * PAGE
    run(sim, st.write(0, obj, 3 * PAGE))
    run(sim, st.finalize(0, obj))
    assert not st.packs
    run(sim, st.free(0, obj))
    assert exec_mem(sim) == (0, 0, 0)


def test_trampolines_share_the_packs():
    sim = make_sim(strategy="bpf_prog_pack")
    prog = load(sim, 300)
    assert run(sim, sim.bpf.trampoline_attach(0, prog))
    tr = prog.trampoline
    assert tr.handle.pack is prog.image.handle.pack
    assert tr.addr == tr.handle.ptr  # no JIT header in front
    unload(sim, prog)
    assert not sim.exec_strategy.packs


# -- the chunk allocator ---------------------------------------------------------
def test_free_runs_first_fit_and_merging():
    f = FreeRuns(0, 100)
    a = f.take(f.first_fit(10)[0], 10)
    b = f.take(f.first_fit(20)[0], 20)
    c = f.take(f.first_fit(5)[0], 5)
    assert (a, b, c) == (0, 10, 30)
    f.give(b, 20)
    # first fit: the hole left by b, not the tail
    assert f.take(f.first_fit(15)[0], 15) == 10
    assert f.first_fit(70) == (-1, 2)
    f.give(10, 15)
    f.give(a, 10)
    f.give(c, 5)
    assert f.runs() == [(0, 100)]
    with pytest.raises(Exception, match="free"):
        f.give(40, 2)


# -- properties --------------------------------------------------------------------
ops = hs.lists(
    hs.one_of(
        hs.tuples(hs.just("load"), hs.integers(1, 40_000), hs.integers(0, 3)),
        hs.tuples(hs.just("free"), hs.integers(0, 10_000), hs.integers(0, 3)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None)
@given(ops=ops, strategy=hs.sampled_from(PACKS))
def test_live_images_never_overlap_and_everything_returns(ops, strategy):
    sim = make_sim(strategy=strategy)
    pages0 = sim.page_alloc.buddy.nr_allocated_pages
    live = []
    for op, n, cpu in ops:
        if op == "load":
            live.append(load(sim, n, cpu))
        elif live:
            unload(sim, live.pop(n % len(live)), cpu)
        imgs = [p.image.handle for p in live]
        assert_spans_disjoint((i.ptr, i.ptr + i.size) for i in imgs)
        for img in imgs:
            if img.pack is not None:
                assert img.pack.ptr <= img.ptr
                assert img.ptr + img.size <= img.pack.ptr + PMD
    for p in live:
        unload(sim, p)
    assert exec_mem(sim) == (0, 0, 0)
    assert not sim.exec_strategy.packs
    assert_pages_returned(sim, pages0)
