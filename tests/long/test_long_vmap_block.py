"""Long runs of vm_map_ram()'s per-CPU vmap blocks: maps and unmaps of
every size on four CPUs at once, with vm_unmap_aliases(), purges, reclaims
and /proc/kcore reads among them, in batches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.constants import PAGE
from simcore.kernel.vmalloc import (
    VMAP_BBMAP_BITS,
    VMAP_BLOCK,
    VMAP_BLOCK_SIZE,
    VMAP_MAX_ALLOC,
)
from simcore.layout import X86_64
from tests.kernel import pfns, run
from tests.kernel.test_vmalloc import make_sim
from tests.long.harness import (
    KvaWatch,
    area_pages,
    assert_kva,
    assert_pages,
    assert_ptes,
    busy_areas,
    checked,
    long_settings,
    map_ram,
    page_state,
    settle,
    unmap_ram,
    vmap_ptes,
)

pytestmark = pytest.mark.long

VMALLOC_START = X86_64.vmalloc_start

CPUS = 4  # tests.kernel.test_vmalloc.make_sim's machine
SPAN = 8 * VMAP_BLOCK_SIZE  # room for a few blocks: they run out and are reclaimed

cpu_op = st.one_of(
    st.tuples(
        st.just("map"), st.sampled_from([1, 1, 1, 2, 3, 4, 7, 8, 16, 31, 32, 64, 65])
    ),
    st.tuples(st.just("unmap"), st.integers(0, 999)),
    st.tuples(st.just("aliases"), st.integers(0, 0)),
    st.tuples(st.just("purge"), st.integers(0, 0)),
    st.tuples(st.just("reclaim"), st.integers(0, 0)),
    st.tuples(st.just("vread"), st.integers(0, 999)),
    st.tuples(st.just("think"), st.integers(0, 3000)),
)
plans = st.lists(
    st.lists(st.lists(cpu_op, min_size=1, max_size=12), min_size=CPUS, max_size=CPUS),
    min_size=2,
    max_size=6,
)


def blocks(vm) -> dict:
    """Every vmap_block, by its start."""
    return {vb.va.addr: vb for q in vm._vbqs.values() for vb in q.xa.values()}


def assert_blocks(vm, maps: dict[int, list[int]]) -> None:
    """Each block's used bitmap is exactly the live mappings inside it, a
    block is on its CPU's free list exactly while it has free pages, and
    the busy tree holds exactly the blocks."""
    vbs = blocks(vm)
    used = dict.fromkeys(vbs, 0)
    for addr, pages in maps.items():
        if len(pages) > VMAP_MAX_ALLOC:
            continue
        start = addr & ~(VMAP_BLOCK_SIZE - 1)
        assert start in vbs, f"vm_map_ram {addr:#x} outside every block"
        need = 1 << (len(pages) - 1).bit_length()
        mask = ((1 << need) - 1) << ((addr - start) // PAGE)
        assert not used[start] & mask, f"vm_map_ram {addr:#x} overlaps another"
        used[start] |= mask
    for start, vb in vbs.items():
        assert vb.used == used[start], f"block {start:#x}: bitmap is not the live maps"
        assert 0 <= vb.free <= VMAP_BBMAP_BITS and 0 <= vb.dirty <= VMAP_BBMAP_BITS
        listed = vb in vm._vbq(vb.cpu).free
        assert listed == (vb.free > 0), (
            f"block {start:#x} with {vb.free} free pages "
            f"{'on' if listed else 'off'} its free list"
        )
    busy = {a.addr for a in busy_areas(vm) if a.va_flags & VMAP_BLOCK}
    assert busy == set(vbs), "busy blocks and the block xarrays differ"


@pytest.mark.parametrize("preset", ["latest", "6.1"])
@long_settings(0.15)
@given(plan=plans)
def test_vmap_blocks_map_exactly_the_live_pages(preset, plan):
    sim = make_sim(
        preset=preset,
        sets=("kernel.lazy_max_pages=512",),
        ranges={"vmalloc": (VMALLOC_START, VMALLOC_START + SPAN)},
    )
    vm = sim.vmalloc
    settle(sim)
    kva0 = vm.kva.free_bytes()
    start = page_state(sim)
    base = vmap_ptes(sim.pagetables)
    watch = KvaWatch(sim)
    maps: dict[int, list[int]] = {}  # address -> the pfns mapped there

    def worker(cpu, program):
        for op, arg in program:
            if op == "map":
                yield from map_ram(vm, watch, maps, cpu, arg, pfns)
            elif op == "unmap" and maps:
                yield from unmap_ram(vm, watch, maps, cpu, arg)
            elif op == "aliases":
                yield from vm.vm_unmap_aliases(cpu)
            elif op == "purge":
                yield from vm.purge(cpu)
            elif op == "reclaim":
                yield from vm.reclaim_and_purge(cpu)
            elif op == "vread":
                lo = VMALLOC_START + (arg % 8) * VMAP_BLOCK_SIZE
                yield from vm.vread(cpu, lo, VMAP_BLOCK_SIZE + (arg % 5) * PAGE)
            elif op == "think":
                yield sim.env.timeout(arg)

    def check():
        settle(sim)  # vb_lock, vbq_lock, xa_lock, purge locks all released
        assert_kva(vm)
        assert_blocks(vm, maps)
        assert set(watch.live) == set(maps)
        want = dict(base)
        for addr, pages in maps.items():
            want.update((addr + i * PAGE, p) for i, p in enumerate(pages))
        assert_ptes(sim, want)
        assert_pages(sim, start, area_pages(vm))

    for batch in plan:
        procs = [sim.env.process(worker(c, p)) for c, p in enumerate(batch)]
        sim.env.run(until=sim.env.all_of(procs))
        check()

    def teardown():
        for i, (addr, pages) in enumerate(sorted(maps.items())):
            watch.taken_back(addr)
            yield from vm.vm_unmap_ram(i % CPUS, addr, len(pages))
        yield from vm.reclaim_and_purge(0)

    run(sim, teardown())
    maps.clear()
    check()
    # every block purged, all of the KVA back in the free tree
    assert not blocks(vm)
    assert vm.kva.free_bytes() == kva0 and vm.lazy_nr == 0 and vm.used_bytes == 0
    checked(sum(len(p) for batch in plan for p in batch))
