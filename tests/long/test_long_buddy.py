"""Long runs of the buddy allocator: the structure alone over long
sequences, and the timed allocator (per-CPU lists, zone->lock) on four CPUs
at once, in batches."""

from __future__ import annotations

import operator
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.kernel.page_alloc import MAX_PAGE_ORDER
from tests.kernel import make_sim, run
from tests.kernel.test_page_alloc import OPS, START
from tests.kernel.test_page_alloc import (
    test_no_page_twice_everything_accounted_no_leak as _structure,
)
from tests.long.harness import allocated, checked, long_settings, settle

pytestmark = pytest.mark.long

CPUS = 4  # tests.kernel.make_sim's machine


# -- the structure ---------------------------------------------------------------------
@long_settings(0.5)
@given(kind=START, runs=st.lists(OPS, min_size=1, max_size=6))
def test_structure_accounts_every_page_over_long_sequences(kind, runs):
    # tests/kernel/test_page_alloc.py's check after every operation (full
    # check, no page twice, nothing leaked at the end) over up to six of its
    # sequences run back to back on one allocator
    ops = reduce(operator.add, runs, [])
    for pcp_orders in (False, True):  # order-0 lists only, and v5.14+
        _structure.hypothesis.inner_test(kind=kind, ops=ops, pcp_orders=pcp_orders)
    checked(len(ops))


# -- the timed allocator on several CPUs -------------------------------------------------
cpu_op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, MAX_PAGE_ORDER), st.booleans()),
    st.tuples(st.just("bulk"), st.integers(1, 150), st.booleans()),
    st.tuples(st.just("split"), st.integers(0, 1 << 20), st.booleans()),
    st.tuples(st.just("free"), st.integers(0, 1 << 20), st.booleans()),
    st.tuples(st.just("think"), st.integers(0, 2000), st.booleans()),
)
plans = st.lists(
    st.lists(st.lists(cpu_op, min_size=1, max_size=10), min_size=CPUS, max_size=CPUS),
    min_size=2,
    max_size=6,
)


@long_settings(0.12)
@given(plan=plans)
def test_cpus_at_once_never_share_a_page_and_give_every_page_back(plan):
    run_cpus("{preset: latest}", plan, full=True)


# The same on memory fragmented at boot: ten times the cost per example
# (each check walks some 80,000 free blocks), so fewer examples.
@long_settings(0.015)
@given(plan=plans)
def test_cpus_at_once_on_fragmented_memory(plan):
    run_cpus("{preset: latest, fragmentation: 0.7}", plan, full=False)


def run_cpus(kernel: str, plan, *, full: bool) -> None:
    """Run ``plan`` batch by batch on the timed allocator of a machine
    with ``kernel``, checking after each batch (the buddy's full check only
    if ``full``) and after freeing everything."""
    sim = make_sim(kernel=kernel)
    pa = sim.page_alloc
    b = pa.buddy
    b.drain_pages()
    initial = [b.free_blocks(z.node) for z in b.zones]
    base = b.nr_allocated_pages
    live: dict[int, int] = {}  # handed-out blocks: pfn -> order
    pages: set[int] = set()

    def take(pfn, order):
        block = set(range(pfn, pfn + (1 << order)))
        assert not block & pages, f"pfn {pfn:#x} order {order} handed out twice"
        pages.update(block)
        live[pfn] = order

    def give(pfn):
        order = live.pop(pfn)
        pages.difference_update(range(pfn, pfn + (1 << order)))
        return order

    def worker(cpu, program):
        for op, arg, flag in program:
            if op == "alloc":
                pfn = yield from pa.alloc_pages(cpu, arg, zero=flag)
                if pfn is not None:
                    assert pfn % (1 << arg) == 0
                    take(pfn, arg)
            elif op == "bulk":
                got = yield from pa.alloc_pages_bulk(cpu, arg, zero=flag)
                for pfn in got:
                    take(pfn, 0)
            elif op == "split":
                big = sorted(p for p, k in live.items() if k > 0)
                if big:
                    pfn = big[arg % len(big)]
                    order = live.pop(pfn)  # split_page(): now 2^order pages
                    for i in range(1 << order):
                        live[pfn + i] = 0
                    yield from pa.split_page(cpu, pfn, order)
            elif op == "free" and live:
                pfn = sorted(live)[arg % len(live)]
                order = give(pfn)
                if order == 0 and flag:
                    # release_pages(): order-0 pages in one batch
                    batch = [pfn] + [p for p in sorted(live) if live[p] == 0][:30]
                    for p in batch[1:]:
                        give(p)
                    yield from pa.free_pages_batch(cpu, batch)
                else:
                    yield from pa.free_pages(cpu, pfn, order)
            elif op == "think":
                yield sim.env.timeout(arg)

    def check():
        settle(sim)  # zone->lock released, nobody waiting
        # the full check walks every free block: 1 ms on the fresh 8 GiB
        # machine, 70 ms fragmented (there it runs at teardown only)
        b.check(full=full)
        assert b.nr_allocated_pages - base == len(pages)
        assert pages <= allocated(b)

    for batch in plan:
        procs = [sim.env.process(worker(c, p)) for c, p in enumerate(batch)]
        sim.env.run(until=sim.env.all_of(procs))
        check()

    def teardown():
        for i, pfn in enumerate(sorted(live)):
            yield from pa.free_pages(i % CPUS, pfn, give(pfn))

    run(sim, teardown())
    check()
    b.drain_pages()
    b.check(full=True)
    assert [b.free_blocks(z.node) for z in b.zones] == initial
    assert b.nr_allocated_pages == base
    checked(sum(len(p) for batch in plan for p in batch))
