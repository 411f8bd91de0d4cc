"""Era knobs of both architectures' kernels that the presets cite:
INVLPGB for kernel ranges (x86, v6.15) and vread of vm_map_ram areas (v6.3)."""

from __future__ import annotations

import pytest

from simcore.constants import PAGE
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP
from tests.kernel import make_sim, pfns, run


@pytest.mark.parametrize(
    ("preset", "broadcast"), [("6.13", "none"), ("latest", "invlpgb")]
)
def test_invlpgb_for_kernel_ranges_from_6_15_on_cpus_that_have_it(preset, broadcast):
    sim = make_sim(
        machine="{profile: zen3-milan, cpus: 8}", kernel=f'{{preset: "{preset}"}}'
    )
    assert sim.machine.flush.broadcast == broadcast
    # Intel has no INVLPGB: IPIs in every era
    assert make_sim(kernel=f'{{preset: "{preset}"}}').machine.flush.broadcast == "none"


@pytest.mark.parametrize(("preset", "copied"), [("6.1", 0), ("6.6", 2)])
def test_vread_reads_vm_map_ram_areas_from_6_3(preset, copied):
    sim = make_sim(kernel=f'{{preset: "{preset}"}}')
    vm = sim.kernel.vmalloc
    addr = run(sim, vm.vm_map_ram(0, pfns(2)))
    r = run(sim, vm.vread(0, addr, 2 * PAGE))
    assert r.copied == copied * PAGE
    assert r.copied + r.zeroed == 2 * PAGE


@pytest.mark.parametrize(
    ("preset", "strategy", "pack"),
    [
        ("5.18", "bpf_prog_pack", PAGE),
        ("6.1", "bpf_prog_pack", 2 << 20),
        ("5.18", "bpf_prog_pack_2m", 2 << 20),
    ],
)
def test_bpf_prog_pack_size_by_era(preset, strategy, pack):
    sim = make_sim(kernel=f'{{preset: "{preset}"}}', strategy=strategy)
    assert sim.strategy.pack_size == pack


@pytest.mark.parametrize(
    ("machine", "preset", "huge"),
    [
        ("{profile: small-test}", "5.17", False),
        ("{profile: small-test}", "5.18", True),
        ("{profile: neoverse-n1, cpus: 4}", "5.18", False),  # arm64 from v6.1
        ("{profile: neoverse-n1, cpus: 4}", "6.1", True),
    ],
)
def test_huge_vmalloc_by_era_and_architecture(machine, preset, huge):
    sim = make_sim(machine=machine, kernel=f'{{preset: "{preset}"}}')
    area = run(sim, sim.kernel.vmalloc.vmalloc(0, 2 << 20, flags=VM_ALLOW_HUGE_VMAP))
    assert (area.page_shift == 21) is huge


@pytest.mark.parametrize(("preset", "huge"), [("6.9", False), ("6.13", True)])
def test_a_huge_request_was_divided_by_the_nodes_until_6_13(preset, huge):
    # two nodes: until c82be0be9576 (v6.13) __vmalloc_node_range() tested
    # size / num_online_nodes() against PMD_SIZE, so 2 MiB got 4K pages;
    # twice that is huge in both eras
    sim = make_sim(
        machine="{profile: skylake-sp, cpus: 8}", kernel=f'{{preset: "{preset}"}}'
    )
    assert len(sim.page_alloc.buddy.zones) == 2
    vm = sim.kernel.vmalloc
    area = run(sim, vm.vmalloc(0, 2 << 20, flags=VM_ALLOW_HUGE_VMAP))
    assert (area.page_shift == 21) is huge
    area = run(sim, vm.vmalloc(0, 4 << 20, flags=VM_ALLOW_HUGE_VMAP))
    assert area.page_shift == 21


@pytest.mark.parametrize(("preset", "huge"), [("6.9", False), ("6.13", True)])
def test_huge_module_strategies_follow_vmallocs_per_node_rule(preset, huge):
    # vmalloc_huge_modules decides huge-or-4K with vmalloc's own test, so on
    # two nodes a 2 MiB module text is 2M-mapped from v6.13 as vmalloc does
    sim = make_sim(
        machine="{profile: skylake-sp, cpus: 8}",
        kernel=f'{{preset: "{preset}"}}',
        strategy="vmalloc_huge_modules",
    )
    obj = run(sim, sim.kernel.exec_alloc.alloc(0, 2 << 20, "module_text"))
    assert (obj.page_shift == 21) is huge


def test_vmalloc_asks_for_its_high_orders_without_direct_reclaim():
    # the high-order-first path (latest) passes large_gfp = gfp &
    # ~__GFP_DIRECT_RECLAIM: a failed order falls back to the bulk path
    # instead of reclaiming; order 0 keeps the caller's GFP_KERNEL
    from simcore.kernel.page_alloc import GFP_KERNEL, GFP_NORECLAIM

    sim = make_sim(kernel="{preset: latest}")
    pa = sim.page_alloc
    seen = []
    orig = pa.alloc_pages

    def alloc_pages(cpu, order=0, **kw):
        seen.append((order, kw.get("gfp", GFP_KERNEL)))
        return (yield from orig(cpu, order, **kw))

    pa.alloc_pages = alloc_pages
    run(sim, sim.kernel.vmalloc.vmalloc(0, 6 * PAGE))
    assert seen and all(g == GFP_NORECLAIM for o, g in seen if o > 0)
    assert {o for o, _ in seen} >= {2, 1}
