"""Module memory per era (kernel.module_layout): before v6.4 a module is
two module_alloc() areas, core and init, whose parts the loader protects
with module_enable_ro()/_nx()/_x(); from v6.4 (ac3b43283923) one
allocation per mod_mem_type."""

from __future__ import annotations

from simcore.constants import PAGE
from simcore.kernel.module import ModuleSpec
from simcore.kernel.module_layout import (
    after_init_calls,
    formation_calls,
    layouts,
)
from simcore.kernel.pgtable_types import _PAGE_NX, _PAGE_RW
from tests.kernel import make_sim, run

SPEC = ModuleSpec(
    "m0",
    {
        "module_text": 5 * PAGE + 100,
        "module_rodata": 2 * PAGE,
        "module_ro_after_init": 100,
        "module_data": PAGE + 1,
        "module_init_text": PAGE,
        "module_init_data": 10,
    },
    init_ns=10_000,
)


def test_layout_sections_page_aligns_each_part_in_the_kernels_order():
    core, init = layouts(SPEC)
    assert core.kind == "module_text" and init.kind == "module_init_text"
    assert core.parts == {
        "module_text": (0, 6 * PAGE),
        "module_rodata": (6 * PAGE, 2 * PAGE),
        "module_ro_after_init": (8 * PAGE, PAGE),
        "module_data": (9 * PAGE, 2 * PAGE),
    }
    assert core.size == 11 * PAGE and init.size == 2 * PAGE


def test_the_v6_1_permission_calls_over_the_parts():
    lays = {lay.kind: lay for lay in layouts(SPEC)}
    bases = {"module_text": 1 << 30, "module_init_text": 2 << 30}
    calls = formation_calls(bases, lays)
    fns = [fn for _, fn, _, _ in calls]
    # RO (text, init text, rodata), NX (rodata, ro_after_init, data, init
    # data), X (text, init text); the init layout has no rodata
    assert fns == ["set_memory_ro"] * 3 + ["set_memory_nx"] * 4 + ["set_memory_x"] * 2
    assert calls[0] == ("module_text", "set_memory_ro", 1 << 30, 6)
    assert ("module_text", "set_memory_nx", (1 << 30) + 9 * PAGE, 2) in calls
    after = after_init_calls(bases, lays)
    assert after[-1] == ("module_text", "set_memory_ro", (1 << 30) + 8 * PAGE, 1)


def _areas(sim):
    return sum(len(vn.busy) for vn in sim.vmalloc.nodes)


def _load(preset, strategy="module_alloc"):
    sim = make_sim(kernel=f"{{preset: '{preset}'}}", strategy=strategy)
    before = _areas(sim)
    mod = run(sim, sim.kernel.modules.load(0, SPEC))
    assert mod is not None and mod.state == "live"
    return sim, mod, _areas(sim) - before


def test_before_v6_4_a_module_is_a_core_and_an_init_area():
    sim, mod, new = _load("6.1")
    assert new == 2  # core and init (the init one until do_free_init())
    assert set(mod.layouts) == {"module_text"}  # init layout gone after init
    text = mod.text
    assert text.size == 11 * PAGE  # the core: text, rodata, ro_after_init, data
    before = _areas(sim)
    sim.env.run(until=sim.env.now + 10_000_000)  # do_free_init(), after RCU
    assert _areas(sim) == before - 1
    pt = sim.pagetables
    # text RO+X, ro_after_init RO, data RW+NX, as the frob_*() calls left them
    assert not pt.lookup(text.addr).flags & (_PAGE_RW | _PAGE_NX)
    assert not pt.lookup(text.addr + 8 * PAGE).flags & _PAGE_RW
    data = pt.lookup(text.addr + 9 * PAGE).flags
    assert data & _PAGE_RW and data & _PAGE_NX


def test_from_v6_4_one_allocation_per_type():
    _, mod, new = _load("6.6")
    assert new == 6  # every non-empty mod_mem_type
    assert not mod.layouts
    assert mod.text.size == 5 * PAGE + PAGE  # PAGE_ALIGN of the text alone
    assert "module_data" in mod.mem and "module_rodata" in mod.mem


def test_a_per_type_strategy_keeps_its_layout_in_an_older_era():
    _, mod, _ = _load("6.1", strategy="module_alloc_type")
    assert not mod.layouts and "module_data" in mod.mem
