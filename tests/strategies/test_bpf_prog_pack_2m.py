"""bpf_prog_pack_2m: the pack on one 2 MiB mapping (v5.18-rc, and the
module_alloc_huge() followup 20220520235758.1858153-1-song@kernel.org).

A huge-mapped pack costs one iTLB entry for every program in it and
changes the direct-map alias of whole 2 MiB pages (no 4K splits); without
free order-9 pages vmalloc falls back to 4K pages; VM_FLUSH_RESET_PERMS is
not used with huge mappings, so an empty pack is made NX and RW again
before it is freed.
"""

from __future__ import annotations

from simcore.constants import PAGE
from simcore.kernel.pgtable import PAGE_KERNEL
from simcore.kernel.vmalloc import VM_FLUSH_RESET_PERMS
from tests.kernel import make_sim
from tests.strategies.exec_checks import PMD, count, exec_mem, load, unload


def test_every_program_of_a_pack_sits_on_one_2m_page():
    sim = make_sim(strategy="bpf_prog_pack_2m")
    progs = [load(sim, 200 + 50 * i) for i in range(40)]
    (pack,) = sim.exec_strategy.packs
    assert pack.area.page_shift == 21 and pack.ptr % PMD == 0
    assert sim.pagetables.page_shift(pack.ptr) == 21
    touched = {int(a) for p in progs for a in p.image.touches()}
    assert touched == {pack.ptr}
    assert {p.image.page_shift for p in progs} == {21}
    # the 4K pack needs one entry per page its programs span (before v6.15,
    # whose set_memory_rox() may collapse a contiguous pack to a 2M leaf)
    sim4 = make_sim(strategy="bpf_prog_pack", kernel="{preset: '6.9'}")
    progs4 = [load(sim4, 200 + 50 * i) for i in range(40)]
    assert len({int(a) for p in progs4 for a in p.image.touches()}) > 5


def test_the_alias_changes_in_whole_2m_pages():
    sim = make_sim(strategy="bpf_prog_pack_2m")
    load(sim, 300)
    c = sim.metrics.counters
    # the 1G alias is split once into 2M pages; the 2M alias page of the
    # pack changes as a whole
    assert c.get("directmap.level2_splits", 0) == 0
    assert c.get("directmap.4k_bytes", 0) == 0
    assert not sim.exec_strategy.packs[0].area.flags & VM_FLUSH_RESET_PERMS


def test_without_order_9_pages_the_pack_falls_back_to_4k():
    sim = make_sim(
        strategy="bpf_prog_pack_2m", kernel="{preset: latest, fragmentation: 1.0}"
    )
    prog = load(sim, 300)
    assert sim.metrics.counters["vmalloc.huge_fallbacks"] >= 1
    assert prog.image.page_shift == 12
    assert sim.exec_strategy.packs[0].area.nr_pages == PMD // PAGE


def test_an_empty_pack_is_made_nx_and_rw_before_it_is_freed():
    sim = make_sim(strategy="bpf_prog_pack_2m")
    prog = load(sim, 300)
    pack = sim.exec_strategy.packs[0]
    alias = sim.pagetables.page_address(pack.area.pages[0])
    unload(sim, prog)
    hists = sim.metrics.hists
    assert hists["set_memory_nx"].n == 1 and hists["set_memory_rw"].n == 1
    assert sim.pagetables.lookup(alias).flags == PAGE_KERNEL
    assert exec_mem(sim) == (0, 0, 0)


def test_a_program_larger_than_a_pack_is_freed_the_same_way():
    sim = make_sim(strategy="bpf_prog_pack_2m")
    prog = load(sim, PMD + 100)
    area = prog.image.handle.area
    assert area is not None and area.page_shift == 21
    unload(sim, prog)
    assert sim.metrics.hists["set_memory_rw"].n == 1
    assert count(sim, "mem.exec.allocated_bytes") == (0,)
