"""jitalloc (Kent Overstreet's jit/text allocator, May 2023).

Facts checked (the posted mm/jitalloc.c; exec-memory.md section 8): eight
power-of-two classes from 16 B to 2 KiB in ROX pages made so once per
slab, larger requests on pages of their own; one mutex; updates with
text_poke_copy() (local flushes only) or, without text_poke, with
set_memory_rw() / memcpy / set_memory_rox() and their all-CPU flushes;
an empty slab's page is released; waste shrinks to the power-of-two
rounding once many programs fill the slabs.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from simcore.constants import PAGE
from simcore.kernel.pgtable import PAGE_KERNEL_ROX
from simcore.strategies.jitalloc import NR_JIT_CACHES, JitObj, jit_cache_idx
from tests.kernel import make_sim, run
from tests.strategies.exec_checks import (
    OPS,
    SKYLAKE16,
    count,
    exercise,
    load,
    shootdowns_per_load,
    splits,
)


def test_size_classes_are_the_posted_ones():
    assert NR_JIT_CACHES == 8
    assert [jit_cache_idx(n) for n in (1, 16, 17, 32, 33, 500, 2048)] == [
        0,
        0,
        1,
        1,
        2,
        5,
        7,
    ]
    assert jit_cache_idx(2049) == NR_JIT_CACHES


def test_objects_of_a_class_share_one_rox_page():
    sim = make_sim(strategy="jitalloc")
    pt = sim.pagetables
    progs = [load(sim, 500) for _ in range(8)]
    page = progs[0].image.addr
    # 512-byte slots, lowest free first, all in the first slab page
    assert [p.image.addr - page for p in progs] == [512 * i for i in range(8)]
    assert pt.lookup(page).flags == PAGE_KERNEL_ROX
    assert count(sim, "mem.exec.regions") == (1,)
    # the ninth needs a new slab
    ninth = load(sim, 500)
    assert ninth.image.addr & ~(PAGE - 1) != page
    # larger than 2 KiB: pages of its own
    big = load(sim, 3000)
    assert not isinstance(big.image.handle, JitObj)
    assert big.image.footprint == PAGE


def test_text_poke_loads_after_the_slab_exists_are_local_flushes_only():
    sim = make_sim(machine=SKYLAKE16, strategy="jitalloc")
    load(sim, 300)
    split0, (shoot0,) = splits(sim), count(sim, "tlb.shootdowns")
    progs = [load(sim, 300) for _ in range(7)]
    assert count(sim, "tlb.shootdowns") == (shoot0,)
    assert splits(sim) == split0
    (shoot0,) = count(sim, "tlb.shootdowns")
    for p in progs:
        run(sim, sim.bpf.prog_free(0, p))
    # freeing a slot touches nothing mapped
    assert count(sim, "tlb.shootdowns") == (shoot0,)


def test_set_memory_updates_flush_every_cpu_twice():
    sim = make_sim(machine=SKYLAKE16, strategy="jitalloc_setmem")
    load(sim, 300)
    split0 = splits(sim)
    for _ in range(5):
        (before,) = count(sim, "tlb.shootdowns")
        load(sim, 300)
        # set_memory_rw() and set_memory_rox(): the direct-map alias makes
        # each a flush_tlb_all(); the first one's vm_unmap_aliases() also
        # purges the verifier's insn_aux_data, vfree()d lazily: one more
        assert count(sim, "tlb.shootdowns") == (before + 3,)
    assert splits(sim) == split0


def test_shootdowns_per_load():
    # BPF loads: none with text_poke, two without and the purge of the
    # verifier's lazily freed insn_aux_data by the first CPA's
    # vm_unmap_aliases(); modules: module_alloc's
    assert shootdowns_per_load("jitalloc") == shootdowns_per_load("module_alloc")[
        :1
    ] + (0,)
    module, bpf = shootdowns_per_load("jitalloc_setmem")
    assert module >= 4 and bpf == 3


@pytest.mark.parametrize("strategy", ["jitalloc", "jitalloc_setmem"])
def test_one_mutex_serialises_allocation_and_free(strategy):
    sim = make_sim(strategy=strategy)
    progs = [load(sim, 100 + 50 * i) for i in range(10)]
    for p in progs:
        run(sim, sim.bpf.prog_free(0, p))
    acq = sim.machine.export_locks()["lock.jit_alloc_lock.acquisitions"]
    extra = 10 if strategy == "jitalloc_setmem" else 0  # held across updates
    assert acq == 20 + extra


def test_empty_slabs_are_released():
    sim = make_sim(strategy="jitalloc")
    progs = [load(sim, 40 * (1 + i % 40)) for i in range(120)]
    assert count(sim, "mem.exec.regions")[0] > 1
    for p in progs:
        run(sim, sim.bpf.prog_free(0, p))
    assert count(sim, "mem.exec.regions", "mem.exec.allocated_bytes") == (0, 0)
    assert count(sim, "mem.exec.region_allocs") == count(sim, "mem.exec.region_frees")


def _rounding(obj) -> int:
    if isinstance(obj.handle, JitObj):
        return (1 << max(4, (obj.size - 1).bit_length())) - obj.size
    return obj.footprint - obj.size


def test_waste_falls_to_the_rounding_with_many_programs():
    sim = make_sim(strategy="jitalloc")
    few = [load(sim, 100)]
    requested, allocated = count(
        sim, "mem.exec.requested_bytes", "mem.exec.allocated_bytes"
    )
    # one small program wastes most of its slab page
    assert allocated - requested > 0.9 * PAGE
    rng = sim.rng("test.sizes")
    many = few + [load(sim, int(n)) for n in rng.integers(20, 2048, 2000)]
    requested, allocated = count(
        sim, "mem.exec.requested_bytes", "mem.exec.allocated_bytes"
    )
    rounding = sum(_rounding(p.image) for p in many)
    assert (allocated - requested - rounding) / len(many) < 64


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_live_objects_never_overlap(ops):
    sim = exercise("jitalloc", ops)
    assert count(sim, "mem.exec.allocated_bytes", "mem.exec.regions") == (0, 0)
