"""vmalloc_huge_modules: module_alloc() allowed huge vmalloc mappings
(x86 v5.18-rc1), and the variant where modules opt out (VM_NO_HUGE_VMAP).

Facts checked (exec-memory.md section 3.4; Rick Edgecombe's review of
fac54e2bfb5b): a PMD per node or more gets 2M leaves, PMD-rounded; a
set_memory_*() covering part of a PMD splits it, and the object's
page_shift follows; a whole PMD keeps its leaf and its direct-map alias
changes at 2M; the VM_FLUSH_RESET_PERMS reset on free toggles the alias
page by page and splits it; small allocations are module_alloc's.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings

from simcore.constants import PAGE
from tests.kernel import make_sim, run
from tests.strategies.exec_checks import (
    OPS,
    PMD,
    SKYLAKE16,
    count,
    exercise,
    shootdowns_per_load,
)

HUGE, NOHUGE = "vmalloc_huge_modules", "vmalloc_huge_modules_nohuge"
# the era the strategy models: set_memory_ro() then set_memory_x(), with
# the huge vmalloc of v5.18-rc1 (fac54e2bfb5b), which no release shipped
ERA = "{preset: '5.17', huge_vmalloc: true}"


def sim_of(strategy, machine="{profile: small-test}"):
    return make_sim(machine=machine, kernel=ERA, strategy=strategy)


def alloc(sim, size, kind="module_text"):
    obj = run(sim, sim.exec_strategy.alloc(0, size, kind))
    assert obj is not None
    return obj


def test_a_large_text_is_huge_until_set_memory_splits_its_tail():
    sim = sim_of(HUGE)
    st, pt = sim.exec_strategy, sim.pagetables
    obj = alloc(sim, 3 << 20)
    # PMD-aligned, rounded up to two PMDs, one 2M leaf each
    assert obj.addr % PMD == 0 and obj.footprint == 2 * PMD
    assert obj.page_shift == 21 and len(obj.touches()) == 2
    run(sim, st.finalize(0, obj))
    # set_memory_ro/x over 768 pages: the first PMD whole, the second split
    assert pt.page_shift(obj.addr) == 21
    assert pt.page_shift(obj.addr + PMD) == 12
    assert pt.page_shift(obj.addr + PMD + (1 << 20)) == 12
    # the object follows PMD by PMD: only the tail PMD was demoted, so its
    # first 2 MiB stay one 2M page and the last 1 MiB is 256 4K pages
    assert obj.page_shift == 12 and obj.pmd_shifts == (21, 12)
    touches, shifts = obj.touches(), obj.touch_shifts()
    assert len(touches) == 1 + 256
    assert int(touches[0]) == obj.addr and shifts[0] == 21
    assert set(shifts[1:].tolist()) == {12}
    assert int(touches[1]) == obj.addr + PMD
    assert int(touches[-1]) == obj.addr + PMD + (1 << 20) - PAGE


def test_one_demoted_pmd_leaves_the_rest_of_a_module_2m_mapped():
    # 5 MiB + 4 KiB of text: three PMDs, set_memory splits the third only
    sim = sim_of(HUGE)
    size = (5 << 20) + PAGE
    obj = alloc(sim, size)
    run(sim, sim.exec_strategy.finalize(0, obj))
    pt = sim.pagetables
    assert [pt.page_shift(obj.addr + i * PMD) for i in range(3)] == [21, 21, 12]
    assert obj.pmd_shifts == (21, 21, 12)
    # two 2M touches and the third PMD's 257 used 4K pages, not 1,281
    assert len(obj.touches()) == 2 + 257
    # what the execution model is handed for an address inside each PMD
    at = np.array([obj.addr + 10, obj.addr + PMD + 10, obj.addr + 2 * PMD + 10])
    assert obj.shift_at(at.astype(np.uint64)).tolist() == [21, 21, 12]


def test_a_whole_pmd_keeps_its_leaf_and_its_alias_stays_2m():
    sim = sim_of(HUGE)
    obj = alloc(sim, PMD)
    (l2,) = count(sim, "directmap.level2_splits")
    run(sim, sim.exec_strategy.finalize(0, obj))
    assert obj.page_shift == 21 and sim.pagetables.page_shift(obj.addr) == 21
    # the direct-map alias changed as one 2M page: no 4K split
    assert count(sim, "directmap.level2_splits") == (l2,)
    # ... until vfree() resets it page by page (VM_FLUSH_RESET_PERMS)
    run(sim, sim.exec_strategy.free(0, obj))
    assert count(sim, "directmap.level2_splits") == (l2 + 1,)
    assert obj.page_shift == 12


def test_modules_opting_out_get_4k_pages_and_split_the_alias():
    sim = sim_of(NOHUGE)
    obj = alloc(sim, PMD)
    assert obj.page_shift == 12 and obj.footprint == PMD
    (l2,) = count(sim, "directmap.level2_splits")
    run(sim, sim.exec_strategy.finalize(0, obj))
    assert count(sim, "directmap.level2_splits")[0] > l2
    assert len(obj.touches()) == PMD // PAGE


def test_huge_needs_a_pmd_per_numa_node():
    # skylake-sp has two nodes: 3 MiB is 1.5 MiB per node, not huge
    sim = sim_of(HUGE, SKYLAKE16)
    assert alloc(sim, 3 << 20).page_shift == 12
    assert alloc(sim, 4 << 20).page_shift == 21


def test_small_allocations_take_module_allocs_set_memory_path():
    """Modules under a PMD per node and BPF programs: a CPA with its
    all-CPU flush per protected type, exactly as module_alloc."""
    base = shootdowns_per_load("module_alloc", kernel=ERA)
    assert base[0] >= 4 and base[1] >= 2  # set_memory_ro, then set_memory_x
    for name in (HUGE, NOHUGE):
        assert shootdowns_per_load(name, kernel=ERA) == base


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_live_objects_never_overlap(ops):
    sim = exercise(HUGE, ops)
    assert count(sim, "mem.exec.allocated_bytes") == (0,)
