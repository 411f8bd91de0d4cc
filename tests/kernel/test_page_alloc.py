"""mm/page_alloc: the buddy allocator's data structure and its timed wrapper."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcore.errors import SimulationError
from simcore.kernel.page_alloc import (
    GFP_NORECLAIM,
    GFP_NORETRY,
    GFP_TRANSHUGE_LIGHT,
    MAX_PAGE_ORDER,
    BuddyAllocator,
    PageAlloc,
    zone_batchsize,
)
from tests.kernel import make_sim, run

GiB = 1 << 18  # pages


def fresh(*nodes):
    return BuddyAllocator(list(nodes))


def fragmented(f, *nodes, seed=1):
    return BuddyAllocator(list(nodes), fragmentation=f, rng=np.random.default_rng(seed))


# -- the buddy structure --------------------------------------------------------------
def test_zone_batchsize_matches_the_kernel_table():
    # zone_batchsize(): 128 MiB -> 7, 256 MiB -> 15, >= 1 GiB -> 63.
    assert zone_batchsize(32768) == 7
    assert zone_batchsize(65536) == 15
    assert zone_batchsize(GiB) == 63
    assert zone_batchsize(64 * GiB) == 63


def test_expand_keeps_the_lower_half_and_lists_the_upper_halves():
    b = fresh(4096)
    assert b.rmqueue(0, 0) == (0, MAX_PAGE_ORDER)  # lowest block, split from 10
    assert b.buddyinfo(0) == [1] * 10 + [3]
    assert b.rmqueue(0, 0) == (1, 0)  # the order-0 upper half is the head


def test_free_merges_with_free_buddies_back_to_order_10():
    b = fresh(2048)
    blocks = [b.alloc_pages(0, 3) for _ in range(4)]
    assert blocks == [0, 8, 16, 24]
    for pfn in reversed(blocks):
        b.free_pages(pfn, 3)
    assert b.buddyinfo(0) == [0] * 10 + [2]
    b.check(full=True)


def test_split_page_pages_are_freed_one_by_one():
    b = fresh(2048)
    head = b.alloc_pages(0, 9)
    b.split_page(head, 9)
    for i in range(512):
        b.free_pages(head + i, 0, cpu=i % 3)
        b.check()
    b.drain_pages()
    assert b.buddyinfo(0) == b.initial_buddyinfo(0)
    with pytest.raises(SimulationError, match="double free"):
        b.free_pages(head + 5, 0)


def test_front_of_a_split_block_can_be_split_again_at_the_same_head():
    b = fresh(2048)
    head = b.alloc_pages(0, 9)
    b.split_page(head, 9)
    b.free_pages(head, 0)
    b.free_pages(head + 1, 0)
    b.drain_pages()  # the two merge back into an order-1 block at ``head``
    again = b.alloc_pages(0, 1)
    assert again == head
    b.split_page(again, 1)
    for i in range(2, 512):  # the rest of the order-9 block
        b.free_pages(head + i, 0)
    b.free_pages(head, 0)
    b.free_pages(head + 1, 0)
    b.drain_pages()
    b.check(full=True)
    assert b.nr_allocated_pages == 0


def test_bad_frees_and_splits_are_caught():
    b = fresh(2048)
    p = b.alloc_pages(0, 2)
    with pytest.raises(SimulationError):
        b.free_pages(p, 1)  # wrong order
    with pytest.raises(SimulationError):
        b.split_page(p, 3)
    with pytest.raises(SimulationError):
        b.free_pages(1500, 0)  # never handed out
    b.free_pages(p, 2)
    with pytest.raises(SimulationError, match="double free"):
        b.free_pages(p, 2)


def test_per_cpu_lists_refill_by_batch_and_drain_at_high():
    b = fresh(GiB)
    zone = b.zones[0]
    pages = [b.alloc_pages(0, 0, cpu=1) for _ in range(zone.high + 10)]
    assert b.nr_pcp_pages == -(len(pages)) % zone.batch
    for p in pages:
        b.free_pages(p, 0, cpu=1)
        assert len(zone.pcp[1]) < zone.high
    assert b.nr_pcp_pages > 0
    b.check()
    b.drain_pages()
    assert b.nr_pcp_pages == 0
    assert b.buddyinfo(0) == b.initial_buddyinfo(0)


def test_high_order_per_cpu_lists_from_5_14():
    b = fresh(1 << 18)
    b.pcp_orders = True
    zone = b.zones[0]
    assert zone.batch == 63
    pfn = b.alloc_pages(0, 2, cpu=1)
    # refilled with max(batch >> 2, 2) order-2 blocks, one handed out
    kept = max(zone.batch >> 2, 2) - 1
    assert b.nr_pcp_pages == kept << 2
    assert len(zone.pcp_hi[1][2]) == kept
    b.free_pages(pfn, 2, cpu=1)  # back to the CPU's order-2 list
    assert len(zone.pcp_hi[1][2]) == kept + 1
    # order 4 has no list: straight to the buddy
    big = b.alloc_pages(0, 4, cpu=1)
    assert 4 not in zone.pcp_hi[1]
    b.free_pages(big, 4, cpu=1)
    b.drain_pages()
    b.check(full=True)
    assert b.nr_pcp_pages == 0
    # before v5.14 an order-2 request goes to the buddy under zone->lock
    old = fresh(1 << 18)
    old.alloc_pages(0, 2, cpu=1)
    assert old.nr_pcp_pages == 0 and not old.zones[0].pcp_hi


def test_bulk_takes_from_the_local_node_only():
    b = fresh(2048, 2048)
    got = b.alloc_pages_bulk(0, 100)
    assert len(got) == 100 and all(p < 2048 for p in got)
    assert len(set(got)) == 100
    rest = b.alloc_pages_bulk(0, 5000)
    assert len(rest) == 2048 - 100 and all(p < 2048 for p in rest)
    # node 0 empty: one page from the ordinary path, which falls back
    one = b.alloc_pages_bulk(0, 50)
    assert len(one) == 1 and one[0] >= 2048


def test_high_order_falls_back_to_other_nodes_unless_thisnode():
    b = fresh(2048, 2048)
    assert [b.alloc_pages(0, 10) for _ in range(2)] == [0, 1024]
    assert b.alloc_pages(0, 10, thisnode=True) is None
    assert b.alloc_pages(0, 10) == 2048
    assert b.fallback_nodes(1) == [1, 0]


def test_fragmented_memory_fails_order_9_where_fresh_succeeds():
    assert fresh(GiB).alloc_pages(0, 9) is not None
    b = fragmented(1.0, GiB)
    assert b.buddyinfo(0)[9:] == [0, 0]
    assert b.alloc_pages(0, 9) is None
    assert b.alloc_pages(0, 8) is not None  # smaller orders are still there
    assert b.buddyinfo(0)[0] > b.buddyinfo(0)[4] > 0
    b.check(full=True)


def test_fragmentation_share_and_determinism():
    b = fragmented(0.5, 4 * GiB)
    share = b.nr_free_pages / b.total_pages
    assert 0.65 < share < 0.85  # about 1 - f/2
    # untouched regions keep their 4 MiB blocks; broken ones offer < 2 MiB
    assert b.buddyinfo(0)[10] > 0 and b.buddyinfo(0)[9] == 0
    assert fragmented(0.5, 4 * GiB).buddyinfo(0) == b.buddyinfo(0)
    assert fragmented(0.5, 4 * GiB, seed=2).buddyinfo(0) != b.buddyinfo(0)


def test_lazy_regions_come_after_the_materialised_ones():
    b = fragmented(0.5, GiB)
    before = b.free_blocks(0)
    got = [b.alloc_pages(0, 3) for _ in range(20)]
    # Boot order: the lowest order-3 blocks of the node are taken first.
    assert got == sorted(p for p, k in before if k == 3)[:20]
    assert b.zones[0].lazy.cursor < b.zones[0].lazy.nr_regions


def test_model_memory_does_not_grow_with_ram():
    def footprint(pages, f):
        tracemalloc.start()
        b = fragmented(f, pages) if f else fresh(pages)
        for _ in range(300):
            b.alloc_pages(0, 0)
            b.alloc_pages(0, 4)
        cur, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert b.total_pages == pages
        return cur

    for f in (0.0, 0.3):
        small, big = footprint(4 * GiB, f), footprint(1024 * GiB, f)
        assert big < 2 * small, (f, small, big)


# -- random interleavings ----------------------------------------------------------------
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("alloc"),
            st.integers(0, MAX_PAGE_ORDER),
            st.integers(0, 1),
            st.integers(0, 2),
        ),
        st.tuples(
            st.just("bulk"), st.integers(1, 150), st.integers(0, 1), st.integers(0, 2)
        ),
        st.tuples(st.just("split"), st.integers(0, 1 << 20)),
        st.tuples(st.just("free"), st.integers(0, 1 << 20), st.integers(0, 2)),
        st.tuples(st.just("drain")),
    ),
    max_size=50,
)
START = st.sampled_from(["fresh", "fragmented", "buddyinfo"])


def _start(kind):
    if kind == "fresh":
        return fresh(4096, 2048)
    if kind == "fragmented":
        return fragmented(0.7, 4096, 2048, seed=3)
    return BuddyAllocator(
        [4096, 2048],
        buddyinfo=[
            [9, 5, 3, 2, 2, 1, 1, 1, 0, 1, 1],
            [4, 0, 2, 0, 0, 1, 0, 0, 1, 0, 1],
        ],
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=START, ops=OPS, pcp_orders=st.booleans())
def test_no_page_twice_everything_accounted_no_leak(kind, ops, pcp_orders):
    b = _start(kind)
    b.pcp_orders = pcp_orders  # the v5.14+ high-order per-CPU lists
    initial = [b.free_blocks(n) for n in range(2)]
    live: dict[int, int] = {}  # handed-out blocks: pfn -> order
    pages: set[int] = set()

    def take(pfn, order):
        block = set(range(pfn, pfn + (1 << order)))
        assert not block & pages, "a page was handed out twice"
        pages.update(block)
        live[pfn] = order

    for op in ops:
        if op[0] == "alloc":
            _, order, node, cpu = op
            pfn = b.alloc_pages(node, order, cpu=cpu)
            if pfn is not None:
                assert pfn % (1 << order) == 0
                take(pfn, order)
        elif op[0] == "bulk":
            _, n, node, cpu = op
            for pfn in b.alloc_pages_bulk(node, n, cpu=cpu):
                take(pfn, 0)
        elif op[0] == "split":
            big = sorted(p for p, k in live.items() if k > 0)
            if big:
                pfn = big[op[1] % len(big)]
                order = live.pop(pfn)
                b.split_page(pfn, order)
                for i in range(1 << order):
                    live[pfn + i] = 0
        elif op[0] == "free":
            if live:
                pfn = sorted(live)[op[1] % len(live)]
                order = live.pop(pfn)
                b.free_pages(pfn, order, cpu=op[2])
                pages.difference_update(range(pfn, pfn + (1 << order)))
        else:
            b.drain_pages()
        b.check(full=True)
        assert b.nr_allocated_pages == len(pages)
    for pfn, order in sorted(live.items()):
        b.free_pages(pfn, order, cpu=pfn % 3)
    b.drain_pages()
    b.check(full=True)
    assert [b.free_blocks(n) for n in range(2)] == initial
    assert b.nr_allocated_pages == 0


# -- the timed wrapper ---------------------------------------------------------------------
def test_costs_and_zeroing_are_charged():
    sim = make_sim()
    pa = PageAlloc(sim.kernel)
    c = sim.profile.kernel_costs
    env = sim.env
    # a fresh allocator; the lock statistics are shared by name
    locked0 = sim.machine.lock_stats["zone_lock"].acquisitions

    def timed(gen):
        t0 = env.now
        value = run(sim, gen)
        return value, env.now - t0

    _, first = timed(pa.alloc_pages(0, 0))  # empty pcp list: refill under zone->lock
    _, second = timed(pa.alloc_pages(0, 0))
    assert second == int(c.page_alloc_ns.value)
    assert first > second
    _, zeroed = timed(pa.alloc_pages(0, 2, zero=True))
    assert zeroed >= 4 * c.page_zero_ns.value
    assert sim.machine.lock_stats["zone_lock"].acquisitions - locked0 == 2
    _, bulk = timed(pa.alloc_pages_bulk(1, 100))
    singles = 0
    for _ in range(100):
        singles += timed(pa.alloc_pages(2, 0))[1]
    assert bulk < singles
    assert sim.metrics.counters["buddy.free_pages"] == pa.buddy.nr_free_pages
    pa.buddy.check()


def test_a_free_to_the_per_cpu_list_costs_its_share_of_an_allocation():
    """free_unref_page(): page_free_factor of page_alloc_ns (a published
    ratio of the two paths), not the allocation's price."""
    sim = make_sim()
    pa = PageAlloc(sim.kernel)
    c = sim.profile.kernel_costs
    pfn = run(sim, pa.alloc_pages(0, 0))
    t0 = sim.env.now
    run(sim, pa.free_pages(0, pfn, 0))
    assert sim.env.now - t0 == int(c.page_alloc_ns.value * c.page_free_factor.value)
    assert 0 < c.page_free_factor.value < 1


def test_zone_lock_is_contended_by_concurrent_refills():
    sim = make_sim()
    pa = PageAlloc(sim.kernel)

    def worker(cpu):
        # order 5: no per-CPU list in any era, every call under zone->lock
        for _ in range(20):
            pfn = yield from pa.alloc_pages(cpu, 5)
            yield from pa.free_pages(cpu, pfn, 5)

    locked0 = sim.machine.lock_stats["zone_lock"].acquisitions
    procs = [sim.env.process(worker(cpu)) for cpu in range(4)]
    sim.env.run(until=sim.env.all_of(procs))
    st = sim.machine.lock_stats["zone_lock"]
    assert st.acquisitions - locked0 == 4 * 20 * 2
    assert st.contended > 0 and st.wait_ns > 0
    pa.buddy.check(full=False)
    assert pa.buddy.nr_allocated_pages == 0


def test_cpus_allocate_from_their_own_node():
    sim = make_sim(machine="{profile: skylake-sp}")
    pa = PageAlloc(sim.kernel)
    assert len(pa.buddy.zones) == 2
    # Linux numbering: cores of socket 0, of socket 1, then the SMT siblings.
    assert [pa.node_of(c) for c in (0, 27, 28, 55, 56, 84)] == [0, 0, 1, 1, 0, 1]
    node1 = pa.buddy.zones[1]
    pfn = run(sim, pa.alloc_pages(28, 0))
    assert node1.start_pfn <= pfn < node1.end_pfn
    pfns = run(sim, pa.alloc_pages_bulk(0, 100))
    assert all(p < node1.start_pfn for p in pfns)


def test_fragmentation_knob_reaches_the_allocator():
    ok = make_sim(kernel="{preset: latest}")
    assert run(ok, PageAlloc(ok.kernel).alloc_pages(0, 9)) is not None
    sim = make_sim(kernel="{preset: latest, fragmentation: 1.0}")
    pa = PageAlloc(sim.kernel)
    assert run(sim, pa.alloc_pages(0, 9)) is None
    assert sim.metrics.counters["buddy.order9_failures"] == 1
    assert run(sim, pa.alloc_pages(0, 0)) is not None


# -- the slow path's gfp masks ---------------------------------------------------------
def _below_min_watermark():
    """A machine whose one node holds fewer free pages than its min
    watermark, nothing reclaimable: every allocation takes the slow path
    and its second pass finds nothing."""
    sim = make_sim()
    pa = sim.page_alloc
    zone = pa.buddy.zones[0]
    for order in range(MAX_PAGE_ORDER, -1, -1):
        while zone.nr_free_pages - (1 << order) >= zone.wmark_min - 1:
            if pa.buddy.alloc_pages(0, order) is None:
                break
    assert zone.nr_free_pages < zone.wmark_min
    return sim, pa


def test_a_costly_noretry_order_fails_without_reclaim_below_the_watermarks():
    """__alloc_pages_slowpath(): compaction comes first for order > 3, is
    skipped on a zone short of its low watermark plus compact_gap(), and a
    costly __GFP_NORETRY request then fails without direct reclaim; order
    3 is not costly and reclaims once."""
    sim, pa = _below_min_watermark()
    c = sim.metrics.counters
    assert run(sim, pa.alloc_pages(0, 9, gfp=GFP_NORETRY)) is None
    assert c["buddy.compact_skipped_failures"] == 1
    assert c["vmscan.allocstall"] == 0
    assert run(sim, pa.alloc_pages(0, 3, gfp=GFP_NORETRY)) is None
    assert c["vmscan.allocstall"] == 1
    assert c["buddy.compact_skipped_failures"] == 1


def test_a_transhuge_light_fault_does_not_wake_kswapd():
    """GFP_TRANSHUGE_LIGHT clears __GFP_KSWAPD_RECLAIM (no ALLOC_KSWAPD);
    GFP_NOWAIT-like masks keep it and wake kswapd."""
    sim, pa = _below_min_watermark()
    c = sim.metrics.counters
    assert run(sim, pa.alloc_pages(0, 9, gfp=GFP_TRANSHUGE_LIGHT)) is None
    assert c.get("vmscan.kswapd_wakeups", 0) == 0
    assert c["vmscan.allocstall"] == 0
    assert run(sim, pa.alloc_pages(0, 9, gfp=GFP_NORECLAIM)) is None
    assert c["vmscan.kswapd_wakeups"] == 1
