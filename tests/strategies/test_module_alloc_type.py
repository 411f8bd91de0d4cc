"""module_alloc_type (Song Liu's type-aware module allocator, May 2023).

Facts checked (the series' x86 table, patch 3): text comes back ROX and
read-only data RO from the allocator itself, so finalize changes nothing
for them; every type is mapped PAGE_KERNEL_EXEC first, so the data types
pay a real set_memory_nx(); relocations are one text_poke() each plus a
text_poke_sync(); BPF trampolines are written between a forced
unprotect and protect; BPF programs stay in bpf_prog_pack, whose packs
now come from module_alloc_type(MOD_TEXT) and so are 2 MiB-mapped; no
type but BPF shares pages (the series ships no binpack allocator).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from simcore.constants import PAGE
from simcore.kernel.pgtable import PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX
from simcore.strategies.module_alloc_type import (
    RELOC_BYTES,
    X86_KINDS,
    ModuleAllocType,
)
from tests.kernel import make_sim, run
from tests.strategies.exec_checks import (
    OPS,
    PMD,
    SKYLAKE16,
    count,
    exercise,
    load,
    shootdowns_per_load,
)


def alloc(sim, kind, size):
    obj = run(sim, sim.exec_strategy.alloc(0, size, kind))
    assert obj is not None
    return obj


def test_text_and_rodata_are_protected_by_the_allocator():
    sim = make_sim(machine=SKYLAKE16, strategy="module_alloc_type")
    st, pt = sim.exec_strategy, sim.pagetables
    text = alloc(sim, "module_text", 3 * PAGE)
    ro = alloc(sim, "module_rodata", 2 * PAGE)
    assert pt.lookup(text.addr).flags == PAGE_KERNEL_ROX
    assert pt.lookup(ro.addr).flags == PAGE_KERNEL_RO
    shoot = count(sim, "tlb.shootdowns")
    run(sim, st.finalize(0, text))
    run(sim, st.finalize(0, ro))
    assert count(sim, "tlb.shootdowns") == shoot


def test_data_mapped_exec_pays_a_real_set_memory_nx():
    counts = {}
    for strategy in ("module_alloc", "module_alloc_type"):
        sim = make_sim(machine=SKYLAKE16, strategy=strategy)
        data = alloc(sim, "module_data", 2 * PAGE)
        run(sim, sim.vmalloc.vm_unmap_aliases(0))  # nothing lazy left to purge
        (before,) = count(sim, "tlb.shootdowns")
        run(sim, sim.exec_strategy.finalize(0, data))
        counts[strategy] = count(sim, "tlb.shootdowns")[0] - before
        assert sim.pagetables.lookup(data.addr).flags == PAGE_KERNEL
    # module_alloc maps PAGE_KERNEL: nothing to change, no flush
    assert counts == {"module_alloc": 0, "module_alloc_type": 1}


def test_relocations_are_one_text_poke_each_and_a_sync():
    sim = make_sim(machine=SKYLAKE16, strategy="module_alloc_type")
    st, tp = sim.exec_strategy, sim.text_poke
    text = alloc(sim, "module_text", 16 * PAGE)
    names = ("text_poke.pokes", "text_poke.sync_rounds", "tlb.shootdowns")
    pokes, syncs, shoot = count(sim, *names)
    t0 = sim.env.now
    run(sim, st.write(0, text, 16 * PAGE))
    batched = sim.env.now - t0
    assert count(sim, *names) == (pokes + 8, syncs, shoot)  # 8 KiB chunks
    t0 = sim.env.now
    run(sim, st.write(0, text, 16 * PAGE, 1001))
    each = sim.env.now - t0
    assert count(sim, *names) == (pokes + 8 + 8 + 1000, syncs + 1, shoot)
    # the relocations cost a __text_poke() each, besides the sync round
    assert each - batched > 1000 * tp.poke_ns(text.addr, RELOC_BYTES)


def test_trampolines_are_written_between_unprotect_and_protect():
    sim = make_sim(machine=SKYLAKE16, strategy="module_alloc_type")
    st, pt = sim.exec_strategy, sim.pagetables
    tramp = alloc(sim, "bpf_trampoline", PAGE)
    (before,) = count(sim, "tlb.shootdowns")
    run(sim, st.write(0, tramp, 200))
    # set_memory_nx(), set_memory_rw(), set_memory_rox(): a full flush each
    assert count(sim, "tlb.shootdowns") == (before + 3,)
    assert pt.lookup(tramp.addr).flags == PAGE_KERNEL_ROX


def test_bpf_packs_are_2m_mapped_and_loads_then_need_no_shootdown():
    sim = make_sim(machine=SKYLAKE16, strategy="module_alloc_type")
    first = load(sim, 300)
    assert first.image.page_shift == 21
    assert sim.pagetables.page_shift(first.image.addr) == 21
    l2, (shoot,) = (
        count(sim, "directmap.level2_splits")[0],
        count(sim, "tlb.shootdowns"),
    )
    progs = [load(sim, 100 + 13 * i) for i in range(100)]
    assert count(sim, "tlb.shootdowns") == (shoot,)
    # the pack's direct-map alias went read-only as one 2M page
    assert count(sim, "directmap.level2_splits") == (l2,) == (0,)
    assert len({p.image.touches()[0] for p in progs}) == 1


def test_shootdowns_per_load():
    # a module: one CPA with its full flush per protected type (text and
    # init text ROX, rodata NX + RO, data NX, ro_after_init NX + RO, init
    # data NX), and one purge by the first CPA's vm_unmap_aliases() of what
    # was lazily freed before (the previous load's .ko copy and the BPF
    # verifier's insn_aux_data); a BPF program into an existing pack: none
    assert shootdowns_per_load("module_alloc_type") == (9, 0)


def test_pack_waste_is_most_of_a_pack_for_a_few_and_small_for_thousands():
    sim = make_sim(strategy="module_alloc_type")
    st = sim.exec_strategy
    progs = [load(sim, 400) for _ in range(5)]
    requested, allocated = count(
        sim, "mem.exec.requested_bytes", "mem.exec.allocated_bytes"
    )
    assert allocated == st.pack_size and allocated - requested > 0.99 * st.pack_size
    # fill the pack: 3,600 programs of 500 B (576 B once rounded)
    progs += [load(sim, 500) for _ in range(3595)]
    requested, allocated = count(
        sim, "mem.exec.requested_bytes", "mem.exec.allocated_bytes"
    )
    rounding = sum(st.bpf_image_size(p.image.size) - p.image.size for p in progs)
    assert (allocated - requested - rounding) / len(progs) < 64
    assert count(sim, "mem.exec.regions") == (1,)
    for p in progs:
        run(sim, sim.bpf.prog_free(0, p))
    # the empty pack is freed
    assert count(sim, "mem.exec.regions", "mem.exec.allocated_bytes") == (0, 0)


def test_sub_page_sharing_of_other_types_is_refused():
    # a 2 MiB granule carved at page alignment: the binpack allocator the
    # series leaves out
    with pytest.raises(ValidationError, match="binpack"):
        ModuleAllocType.Params(types={"module_text": {"granularity": PMD}})


def test_the_type_table_is_a_parameter():
    """types.module_rodata.huge: read-only data on 2 MiB mappings too."""
    params = ModuleAllocType.Params(
        types={"module_rodata": {"huge": True}, "module_text": {"alignment": "64K"}}
    )
    st = ModuleAllocType.create(make_sim(machine=SKYLAKE16).kernel, params)
    rodata, how = st.kinds["module_rodata"]
    assert rodata.huge and how == "poke"
    assert rodata.set_memory == X86_KINDS["module_rodata"][0].set_memory
    assert st.kinds["module_text"][0].alignment == 64 << 10
    assert st.text_params is st.kinds["module_text"][0]
    assert st.kinds["module_data"] == X86_KINDS["module_data"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_live_objects_never_overlap(ops):
    sim = exercise("module_alloc_type", ops)
    assert count(sim, "mem.exec.allocated_bytes", "mem.exec.regions") == (0, 0)
