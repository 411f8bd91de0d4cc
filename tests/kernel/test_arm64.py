"""arm64's kernel below the same calls: pageattr.c (set_memory_*() and the
linear map under rodata=full/on), patching.c (text written through the
fixmap, kick_all_cpus_sync()), flush_tlb_kernel_range() per era."""

from __future__ import annotations

import pytest

from simcore.constants import PAGE_SIZE
from simcore.hw.flush import MAX_TLBI_RANGE_PAGES, tlbi_range_ops
from simcore.kernel.arm64.pageattr import Arm64PageAttr
from simcore.kernel.arm64.patching import AARCH64_INSN_SIZE, Arm64Patching
from simcore.kernel.pgtable import _PAGE_NX, _PAGE_RW, LEVEL_1G, LEVEL_4K
from simcore.strategies import get_strategy
from tests.kernel import make_sim, run

N1 = "{profile: neoverse-n1, cpus: 8}"


def arm_sim(kernel="{preset: latest}", machine=N1):
    return make_sim(machine=machine, kernel=kernel)


def vmalloc(sim, pages):
    """A fresh area, with the settle run's lazily freed one purged (so that
    the vm_unmap_aliases() of a permission change has nothing to flush)."""
    area = run(sim, sim.kernel.vmalloc.vmalloc(0, pages * PAGE_SIZE))
    run(sim, sim.kernel.vmalloc.vm_unmap_aliases(0))
    return area


def counters(sim):
    return sim.metrics.counters


# -- the kernel an arm64 profile gets --------------------------------------------
def test_arm64_profile_gets_arm64_kernel_paths():
    sim = arm_sim()
    assert isinstance(sim.kernel.cpa, Arm64PageAttr)
    assert isinstance(sim.kernel.text_poke, Arm64Patching)
    assert sim.kernel.pti is False
    assert sim.resolved.knobs.pti is None and sim.resolved.knobs.rodata == "full"
    assert "pti" not in sim.resolved.data["kernel"]
    assert sim.resolved.data["kernel"]["rodata"] == "full"


def test_x86_config_has_no_arm64_knobs():
    sim = make_sim()
    assert sim.resolved.knobs.rodata is None
    assert "rodata" not in sim.resolved.data["kernel"]
    assert "jump_label_batch" not in sim.resolved.data["kernel"]


# -- the linear map ------------------------------------------------------------------
@pytest.mark.parametrize(("rodata", "leaf"), [("full", LEVEL_4K), ("on", LEVEL_1G)])
def test_linear_map_leaf_size_follows_rodata(rodata, leaf):
    sim = arm_sim(kernel=f"{{preset: latest, rodata: {rodata}}}")
    pt = sim.kernel.pagetables
    assert pt.lookup(pt.page_address(1 << 18)).shift == leaf


def test_set_memory_ro_changes_the_linear_alias_of_every_page_under_rodata_full():
    sim = arm_sim(kernel="{preset: 6.9}")
    area = vmalloc(sim, 4)
    pt = sim.kernel.pagetables
    before = counters(sim).get("tlb.broadcast_flushes", 0)
    # one page of the range: the whole area's linear alias changes
    run(sim, sim.kernel.cpa.set_memory_ro(0, area.addr, 1))
    for pfn in area.pages:
        assert not pt.lookup(pt.page_address(pfn)).flags & _PAGE_RW
    assert not pt.lookup(area.addr).flags & _PAGE_RW
    assert pt.lookup(area.addr + PAGE_SIZE).flags & _PAGE_RW
    # one flush per alias page, one for the range; no IPI, no split
    assert counters(sim)["tlb.broadcast_flushes"] - before == len(area.pages) + 1
    assert counters(sim).get("tlb.ipis", 0) == 0
    assert counters(sim).get("directmap.level2_splits", 0) == 0


def test_rodata_on_leaves_the_linear_map_alone():
    sim = arm_sim(kernel="{preset: 6.9, rodata: on}")
    area = vmalloc(sim, 4)
    pt = sim.kernel.pagetables
    before = counters(sim).get("tlb.broadcast_flushes", 0)
    run(sim, sim.kernel.cpa.set_memory_ro(0, area.addr, 4))
    assert counters(sim)["tlb.broadcast_flushes"] - before == 1
    for pfn in area.pages:
        assert pt.lookup(pt.page_address(pfn)).flags & _PAGE_RW
    # can_set_direct_map() is false: the linear map keeps its blocks
    alias = pt.page_address(area.pages[0])
    run(sim, sim.kernel.cpa.set_direct_map_invalid_noflush(0, alias))
    assert pt.lookup(alias).present and pt.lookup(alias).shift == LEVEL_1G


def test_set_memory_x_never_touches_the_alias():
    sim = arm_sim()
    area = vmalloc(sim, 2)
    pt = sim.kernel.pagetables
    run(sim, sim.kernel.cpa.set_memory_x(0, area.addr, 2))
    assert not pt.lookup(area.addr).flags & _PAGE_NX
    assert pt.lookup(pt.page_address(area.pages[0])).flags & _PAGE_NX


def test_block_linear_map_splits_on_demand_with_bbml2():
    machine = "{profile: neoverse-n1, cpus: 8, cpu: {bbml2_noabort: true}}"
    sim = arm_sim(kernel="{preset: latest}", machine=machine)
    pt = sim.kernel.pagetables
    area = vmalloc(sim, 2)
    alias = pt.page_address(area.pages[0])
    assert pt.lookup(alias).shift == LEVEL_1G
    run(sim, sim.kernel.cpa.set_memory_ro(0, area.addr, 2))
    assert pt.lookup(alias).shift == LEVEL_4K
    assert not pt.lookup(alias).flags & _PAGE_RW
    assert counters(sim)["directmap.level3_splits"] >= 1
    assert counters(sim)["directmap.level2_splits"] >= 1


# -- text patching -------------------------------------------------------------------
def test_one_instruction_is_priced_step_by_step():
    sim = arm_sim()
    tp = sim.kernel.text_poke
    f = sim.machine.flush
    c = counters(sim)
    before = c.get("tlb.broadcast_flushes", 0)
    t = sim.env.now
    run(sim, tp.patch_insn_nosync(0, 0))
    # vmalloc_to_page() walk, fixmap PTE set (with its barrier pair) and
    # clear, the 4 bytes, one broadcast TLBI of the fixmap page; N1 has IDC
    # and DIC: no cache maintenance
    barrier = sim.profile.kernel_costs.pte_barrier_ns.value
    want = (
        tp.walk_ns
        + 2 * tp.pte_ns
        + barrier
        + AARCH64_INSN_SIZE * tp.byte_ns
        + f.bcast_page_ns
        + f.bcast_sync_ns
    )
    assert sim.env.now - t == int(want) + sim.machine.uncontended_ns
    assert c["tlb.broadcast_flushes"] - before == 1
    assert c.get("text_poke.sync_ipis", 0) == 0
    assert tp.caches_clean_inval_pou_ns(AARCH64_INSN_SIZE) == 0


def test_cache_maintenance_by_line_without_idc_dic():
    machine = "{profile: neoverse-n1, cpus: 8, cpu: {ctr_idc: false, ctr_dic: false}}"
    tp = arm_sim(machine=machine).kernel.text_poke
    # DC CVAU and IC IVAU per 64-byte line, each side ended by DSB ISH
    assert tp.caches_clean_inval_pou_ns(4096) == 2 * (64 * tp.line_ns + tp.dsb_ns)


def test_text_copy_maps_each_page_and_kicks_every_cpu_once():
    sim = arm_sim()
    c = counters(sim)
    run(sim, sim.kernel.text_poke.text_poke_copy(0, 0x100, 2 * PAGE_SIZE))
    assert c["text_poke.pokes"] == 3  # three pages touched by 8 KiB at +256
    assert c["text_poke.sync_rounds"] == 1
    assert c["text_poke.sync_ipis"] == 7  # the other 7 CPUs
    assert c.get("tlb.ipis", 0) == 0


@pytest.mark.parametrize(("preset", "kicks"), [("6.9", 0), ("6.13", 1)])
def test_jump_labels_batch_from_6_11(preset, kicks):
    sim = arm_sim(kernel=f"{{preset: {preset}}}")
    c = counters(sim)
    run(sim, sim.kernel.text_poke.jump_label_update(0, 20))
    assert c["text_poke.pokes"] == 20
    assert c.get("text_poke.sync_rounds", 0) == kicks


def test_stop_machine_patching_waits_for_every_cpu():
    sim = arm_sim()
    tp = sim.kernel.text_poke
    t = sim.env.now
    run(sim, tp.patch_text(0, 2))
    c = counters(sim)
    assert c["text_poke.stop_machine"] == 1 and c["text_poke.pokes"] == 2
    # at least the four rendezvous states over 8 CPUs
    assert sim.env.now - t > 4 * 8 * sim.machine.topo.c2c_same_llc_ns


# -- flushes -------------------------------------------------------------------------
def test_range_tlbi_ops():
    assert tlbi_range_ops(1) == 1
    assert tlbi_range_ops(2) == 1
    assert tlbi_range_ops(512) == 1  # 16 << 5: one op at scale 1
    assert tlbi_range_ops(513) == 2
    assert tlbi_range_ops(MAX_TLBI_RANGE_PAGES - 1) == 5


@pytest.mark.parametrize(
    ("profile", "preset", "pages", "full", "cost_pages"),
    [
        ("neoverse-n1", "6.9", 512, False, 512),  # > MAX_DVM_OPS only
        ("neoverse-n1", "6.13", 512, True, 1),  # >= without FEAT_TLBIRANGE
        ("neoverse-v1", "6.13", 512, False, 1),  # one range op
        ("neoverse-v1", "6.9", 300, False, 300),
    ],
)
def test_kernel_range_flush_by_era(profile, preset, pages, full, cost_pages):
    sim = arm_sim(
        kernel=f"{{preset: {preset}}}", machine=f"{{profile: {profile}, cpus: 8}}"
    )
    f = sim.machine.flush
    c = counters(sim)
    before = c.get("tlb.full_flushes", 0)
    ns = f.kernel_range(0, 0, pages * PAGE_SIZE)
    assert (c.get("tlb.full_flushes", 0) - before == 1) is full
    want = cost_pages * f.bcast_page_ns + f.bcast_sync_ns + (f.global_ns if full else 0)
    assert ns == round(want)


# -- eras and input errors ------------------------------------------------------------
def test_strategy_eras_per_architecture():
    pack = get_strategy("bpf_prog_pack")
    assert not pack.what_if("6.6", "x86_64")
    assert pack.what_if("6.6", "arm64") and not pack.what_if("6.9", "arm64")
    assert get_strategy("execmem_rox").what_if("latest", "arm64")
    assert not get_strategy("execmem_rox").what_if("latest", "x86_64")
    # a what-if built on the pack does not inherit its arm64 release
    assert get_strategy("bpf_prog_pack_2m").what_if("latest", "arm64")


# -- kernel PTE barriers --------------------------------------------------------------
@pytest.mark.parametrize(("preset", "per_pte"), [("6.13", True), ("latest", False)])
def test_vmalloc_pays_a_barrier_per_pte_before_6_16(preset, per_pte):
    sim = arm_sim(kernel=f"{{preset: {preset}}}")
    pt = sim.kernel.pagetables
    barrier = sim.profile.kernel_costs.pte_barrier_ns.value
    write = sim.profile.kernel_costs.pte_write_ns.value
    if per_pte:
        assert (pt.set_ns, pt.batch_ns) == (write + barrier, 0.0)
    else:
        assert (pt.set_ns, pt.batch_ns) == (write, barrier)
    # 64 pages mapped: 64 barrier pairs, or one
    t = sim.env.now
    assert run(sim, pt.vmap_pages_range(0, 0xFFFF800090000000, list(range(64))))
    took = sim.env.now - t
    table = 2 * (sim.profile.kernel_costs.page_alloc_ns.value)  # PMD/PTE tables
    assert took > 64 * write + (64 if per_pte else 1) * barrier
    if not per_pte:
        assert took < 64 * write + 2 * barrier + table + 5_000


def test_x86_pte_writes_carry_no_barrier():
    pt = make_sim().kernel.pagetables
    assert pt.batch_ns == 0.0 and pt.set_ns == pt.pte_ns


# -- layout and executable memory per era ----------------------------------------------
@pytest.mark.parametrize(
    ("preset", "bpf_range", "modules_mib"),
    [("5.10", "bpf", 128), ("6.1", "vmalloc", 2048), ("6.9", "vmalloc", 2048)],
)
def test_bpf_images_and_modules_by_era(preset, bpf_range, modules_mib):
    sim = arm_sim(kernel=f'{{preset: "{preset}"}}')
    k = sim.kernel
    assert k.execmem_range("bpf_prog") == bpf_range
    assert k.execmem_range("module_text") == "modules"
    lo, hi = k.layout.ranges["modules"]
    assert (hi - lo) >> 20 == modules_mib
    # bpf_jit_limit: half of what the BPF range holds (64 MiB in the region)
    lo, hi = k.layout.ranges[bpf_range]
    assert k.bpf.limit == (hi - lo) // 2
    # the kernel image is busy in the vmalloc range: nothing lands on it
    area = vmalloc(sim, 1)
    assert not k.layout.kimage_vaddr <= area.addr < k.layout.kimage_vaddr + (64 << 20)


def test_x86_bpf_images_stay_in_the_module_range():
    k = make_sim().kernel
    assert k.execmem_range("bpf_prog") == "modules"


def test_change_memory_common_refuses_what_is_not_one_page_mapped_vm_alloc_area():
    sim = arm_sim()
    vm = sim.kernel.vmalloc
    area = vmalloc(sim, 2)
    c = counters(sim)
    # past the area (the guard page is part of vm->size, one more is not)
    assert run(sim, sim.kernel.cpa.set_memory_ro(0, area.addr, 4)) == -22
    # an area without VM_ALLOC (get_vm_area(VM_MAP))
    mapped = run(sim, vm.get_vm_area(0, 2 * PAGE_SIZE))
    assert run(sim, sim.kernel.cpa.set_memory_ro(0, mapped.addr, 1)) == -22
    assert c["pageattr.einval"] == 2
    assert sim.kernel.pagetables.lookup(area.addr).flags & _PAGE_RW
