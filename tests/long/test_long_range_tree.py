"""Long runs of the BPF arena's range tree: alone against a bitmap over long
sequences, and inside arenas of every strategy and era, with concurrent
allocations, frees, faults and accesses in rounds."""

from __future__ import annotations

import operator
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.arena import ERAS, STRATEGIES, new_arena, quiet_sim
from tests.arena.test_properties import PAGES, USER_CPU, Watch, do
from tests.arena.test_properties import op as arena_op
from tests.arena.test_range_tree import ops as rt_ops
from tests.arena.test_range_tree import test_matches_a_bitmap as _tree_vs_bitmap
from tests.kernel import run
from tests.long.harness import (
    assert_ptes,
    checked,
    long_settings,
    settle,
    table_pages,
)

pytestmark = pytest.mark.long


# -- the tree alone ---------------------------------------------------------------------
@long_settings(2.5)
@given(runs=st.lists(rt_ops, min_size=1, max_size=5))
def test_range_tree_matches_a_bitmap_over_long_sequences(runs):
    # tests/arena/test_range_tree.py's check after every operation (ranges,
    # free count, best fit) over up to five of its sequences back to back
    sequence = reduce(operator.add, runs, [])
    _tree_vs_bitmap.hypothesis.inner_test(sequence)
    checked(len(sequence))


# -- inside arenas ----------------------------------------------------------------------
rounds = st.lists(st.lists(arena_op, min_size=1, max_size=3), min_size=2, max_size=16)


def arena_ptes(arena) -> dict[int, int]:
    """What the arena's kernel window should map: its 4K pages, the scratch
    page where BPF touched holes, and the 2 MiB regions of arena_huge."""
    want = {arena.kaddr(p): pfn for p, pfn in arena.pfn.items()}
    want.update((arena.kaddr(p), arena.scratch_pfn) for p in arena.scratch)
    for r, head in getattr(arena.priv, "head", {}).items():
        want.update((arena.kaddr((r << 9) + i), head + i) for i in range(512))
    return want


@pytest.mark.parametrize("preset", ERAS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@long_settings(0.02)
@given(plan=rounds)
def test_arena_allocations_stay_disjoint_mapped_and_accounted(strategy, preset, plan):
    sim = quiet_sim(strategy, preset)
    pa = sim.page_alloc
    base_pages, base_tables = pa.buddy.nr_allocated_pages, table_pages(sim)
    arena = new_arena(sim, PAGES, mm_cpus=(USER_CPU,))
    window = (arena.kern_vm.addr, arena.kern_vm.addr + arena.kern_vm.size)
    watch = Watch(sim, arena)
    live: list[tuple[int, int]] = []

    def check():
        # the round's deferred frees done, every lock released
        settle(sim, lambda: arena.deferred_done() is None)
        arena.check()
        # live allocations: disjoint, allocated in the range tree, backed
        spans = sorted((arena.compute_pgoff(u), n) for u, n in live)
        for (p0, n0), (p1, _) in zip(spans, spans[1:], strict=False):
            assert p0 + n0 <= p1, f"allocations overlap at pgoff {p1}"
        for p, n in spans:
            assert arena.rt.free_in(p, n) == 0, f"pgoff {p}..{p + n} is free"
            backed = (arena.strategy.backing_pfn(arena, q) for q in range(p, p + n))
            assert None not in backed, f"pgoff {p}..{p + n} allocated, not backed"
        # every PTE of the window is a page the arena knows
        assert_ptes(sim, arena_ptes(arena), lo=window[0], hi=window[1])
        # every page taken since the start is held by the arena or a table
        grown = pa.buddy.nr_allocated_pages - base_pages
        assert grown == arena.held + table_pages(sim) - base_tables
        pa.buddy.check()

    for group in plan:
        procs = [
            sim.env.process(do(sim, arena, live, cpu, o)) for cpu, o in enumerate(group)
        ]
        sim.env.run(until=sim.env.all_of(procs))
        # do() drops the live allocations a free_range overlaps when it
        # starts; one allocated meanwhile by another CPU of the round may
        # land in the range before it is freed, or after: forget it (its
        # pages stay the arena's until the teardown)
        freed = [(o[1], o[1] + o[2]) for o in group if o[0] == "free_range"]
        live[:] = [
            (u, n)
            for u, n in live
            if all(
                arena.compute_pgoff(u) + n <= lo or arena.compute_pgoff(u) >= hi
                for lo, hi in freed
            )
        ]
        check()
    watch.tearing_down = True
    run(sim, arena.destroy(0))
    settle(sim)  # the lazy KVA purge
    assert arena.held == 0 and not arena.pfn and not arena.user
    assert_ptes(sim, {}, lo=window[0], hi=window[1])
    assert pa.buddy.nr_allocated_pages - base_pages == table_pages(sim) - base_tables
    pa.buddy.check(full=True)
    sim.vmalloc.check()
    assert sim.metrics.counters["mem.arena.kva_bytes"] == 0
    checked(sum(len(g) for g in plan))
