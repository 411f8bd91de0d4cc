"""Long runs of the KVA allocator: the free tree against a brute-force
first fit, and vmalloc/vfree/vm_map_ram with per-node pools and lazy purge
on four CPUs at once, in batches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.constants import PAGE
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP, VM_FLUSH_RESET_PERMS
from simcore.layout import X86_64
from tests.kernel import pfns, run
from tests.kernel.test_kva import op as kva_op
from tests.kernel.test_kva import (
    test_tree_matches_brute_force_first_fit as _tree_vs_first_fit,
)
from tests.kernel.test_vmalloc import cpu_op, make_sim, purge_op
from tests.long.harness import (
    KvaWatch,
    area_pages,
    assert_kva,
    assert_pages,
    assert_ptes,
    checked,
    long_settings,
    map_ram,
    page_state,
    settle,
    unmap_ram,
    vmalloc_ptes,
    vmap_ptes,
)

pytestmark = pytest.mark.long

VMALLOC_START = X86_64.vmalloc_start

CPUS = 4  # tests.kernel.test_vmalloc.make_sim's machine


# -- the free tree -------------------------------------------------------------------
@long_settings(1.25)
@given(ops=st.lists(kva_op, min_size=20, max_size=400))
def test_free_tree_matches_first_fit_over_long_sequences(ops):
    # the whole check of tests/kernel/test_kva.py after every operation, on
    # sequences three times longer
    _tree_vs_first_fit.hypothesis.inner_test(ops)
    checked(len(ops))


# -- vmalloc on several CPUs ---------------------------------------------------------
# batches of the operations of test_interleavings_keep_kva_sound, all CPUs of
# a batch at once; areas and mappings outlive their batch and any CPU may
# free any of them
plans = st.lists(
    st.lists(st.lists(cpu_op, min_size=1, max_size=8), min_size=CPUS, max_size=CPUS),
    min_size=2,
    max_size=6,
)
FLAGS = {"vmalloc": 0, "vmalloc_rp": VM_FLUSH_RESET_PERMS, "huge": VM_ALLOW_HUGE_VMAP}


@pytest.mark.parametrize("preset", ["latest", "6.1", "5.10"])
@long_settings(0.15)
@given(plan=plans)
def test_vmalloc_batches_keep_kva_pages_ptes_and_locks_sound(preset, plan):
    # 3 MiB of vmalloc range: addresses are reused, allocations fail,
    # reclaim and retry
    sim = make_sim(
        preset=preset,
        sets=("kernel.lazy_max_pages=96",),
        ranges={"vmalloc": (VMALLOC_START, VMALLOC_START + (3 << 20))},
    )
    vm = sim.vmalloc
    settle(sim)
    kva0 = vm.kva.free_bytes()
    start = page_state(sim)
    base = vmap_ptes(sim.pagetables)
    watch = KvaWatch(sim)
    areas: list = []
    maps: dict[int, list[int]] = {}  # vm_map_ram address -> the pfns mapped

    def worker(cpu, program):
        for op, arg in program:
            if op in FLAGS:
                a = yield from vm.vmalloc(cpu, arg * PAGE, flags=FLAGS[op])
                if a is not None:
                    watch.handed_out(a.addr, a.end, op)
                    areas.append(a)
            elif op == "ro" and areas:
                # out of the list while in use: no other CPU frees it meanwhile
                a = areas.pop(arg % len(areas))
                if a.flags & VM_FLUSH_RESET_PERMS:
                    yield from sim.cpa.set_memory_ro(cpu, a.addr, a.nr_pages)
                areas.append(a)
            elif op == "vfree" and areas:
                a = areas.pop(arg % len(areas))
                watch.taken_back(a.addr)
                yield from vm.vfree(cpu, a)
            elif op == "map":
                yield from map_ram(vm, watch, maps, cpu, arg, pfns)
            elif op == "unmap" and maps:
                yield from unmap_ram(vm, watch, maps, cpu, arg)
            elif op == "purge":
                yield from purge_op(vm, cpu, arg)
            elif op == "think":
                yield sim.env.timeout(arg)

    def check():
        settle(sim)  # every lock released, the drain work done
        assert_kva(vm)
        assert set(watch.live) == {a.addr for a in areas} | set(maps)
        want = dict(base)
        want.update(vmalloc_ptes(vm))
        for addr, pages in maps.items():
            want.update((addr + i * PAGE, p) for i, p in enumerate(pages))
        assert_ptes(sim, want)
        assert_pages(sim, start, area_pages(vm))

    for batch in plan:
        procs = [sim.env.process(worker(c, p)) for c, p in enumerate(batch)]
        sim.env.run(until=sim.env.all_of(procs))
        check()

    def teardown():
        for i, a in enumerate(areas):
            watch.taken_back(a.addr)
            yield from vm.vfree(i % CPUS, a)
        for i, (addr, pages) in enumerate(sorted(maps.items())):
            watch.taken_back(addr)
            yield from vm.vm_unmap_ram(i % CPUS, addr, len(pages))
        yield from vm.reclaim_and_purge(0)

    run(sim, teardown())
    areas.clear()
    maps.clear()
    check()
    # everything came back: the free tree, the lazy lists, the pools
    assert vm.kva.free_bytes() == kva0
    assert vm.lazy_nr == 0 and vm.used_bytes == 0
    assert not any(pool for vn in vm.nodes for pool in vn.pools.values())
    checked(sum(len(p) for batch in plan for p in batch))
