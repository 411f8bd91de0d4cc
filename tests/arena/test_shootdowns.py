"""What every arena free costs in TLB shootdowns, and what batching saves.

small-test has 4 CPUs: an all-CPU kernel-range flush is one shootdown of
three IPIs. No other workload runs, so every flush counted is the arena's.
"""

import pytest

from simcore.strategies.arena_batched_free import FREE_BATCH
from tests.arena import ERAS, new_arena, quiet_sim, run_arena
from tests.kernel import run

CHURN = """\
    size: 64MiB
    alloc: {pages: 1}
    populate: {pages: 64}
    churn: {rate: 200000/s, lifetime: 20us}
    bpf: {cpus: 4, rate: 0/s}
    user: {cpus: 1, rate: 0/s}
"""


@pytest.mark.parametrize("preset", ERAS)
def test_every_4k_free_is_an_all_cpu_shootdown(preset):
    m = run_arena(CHURN, "arena_4k", preset, duration="8ms")
    frees = m["arena.frees"]
    assert frees > 300
    assert m["tlb.shootdowns"] == m["arena.kernel_flushes"] == frees
    assert m["tlb.ipis"] == 3 * frees
    assert m["arena.kernel_flushes_per_free"] == 1


@pytest.mark.parametrize("preset", ERAS)
def test_batched_free_cuts_shootdowns_by_the_batch_factor(preset):
    base = run_arena(CHURN, "arena_4k", preset, duration="8ms")
    m = run_arena(CHURN, "arena_batched_free", preset, duration="8ms")
    frees = m["arena.frees"]
    assert frees == base["arena.frees"]
    # one flush per FREE_BATCH spans; the last batch may still be queued
    assert frees // FREE_BATCH <= m["tlb.shootdowns"] <= frees // FREE_BATCH + 1
    assert m["tlb.ipis"] == 3 * m["tlb.shootdowns"]
    ratio = base["tlb.shootdowns"] / m["tlb.shootdowns"]
    print(f"{preset}: {frees} frees, shootdowns 4k/batched = {ratio:.1f}")
    assert ratio == pytest.approx(FREE_BATCH, rel=0.1)
    # the price: pages held until their batch is flushed
    assert 0 < m["mem.arena.pending_free_bytes"] <= FREE_BATCH * 4096
    assert (
        m["alloc.arena_free.latency_ns.mean"] < base["alloc.arena_free.latency_ns.mean"]
    )


def test_batched_free_flushes_a_lone_span_after_its_delay():
    sim = quiet_sim("arena_batched_free", "latest")
    arena = new_arena(sim, 256)
    before = sim.metrics.counters["tlb.shootdowns"]
    uaddr = run(sim, arena.alloc_pages(0, 0, 1))
    run(sim, arena.free_pages(0, uaddr, 1))
    assert sim.metrics.counters["tlb.shootdowns"] == before
    assert arena.held == 2  # the freed page and the scratch page
    sim.env.run(until=sim.env.now + 2_000_000)
    assert sim.metrics.counters["tlb.shootdowns"] == before + 1
    assert arena.held == 1
    arena.check()


@pytest.mark.parametrize(("preset", "flushes"), [("6.13", 8), ("latest", 1)])
def test_multi_page_free_flushes_per_page_in_the_mutex_era(preset, flushes):
    # v6.9: vm_area_unmap_pages() of one page in the loop; Dec 2025: one
    # flush_tlb_kernel_range() over the whole span after the unlock
    sim = quiet_sim("arena_4k", preset)
    arena = new_arena(sim, 256)
    uaddr = run(sim, arena.alloc_pages(0, 0, 8))
    c = sim.metrics.counters
    before = c["tlb.shootdowns"]
    run(sim, arena.free_pages(0, uaddr, 8))
    assert c["tlb.shootdowns"] - before == flushes


def test_user_mapped_pages_are_flushed_on_the_mm_cpus_only():
    sim = quiet_sim("arena_4k", "latest")
    arena = new_arena(sim, 256, mm_cpus=(2, 3))
    uaddr = run(sim, arena.alloc_pages(0, 0, 2))
    for pgoff in (0, 1):
        run(sim, arena.user_fault(3, arena.compute_pgoff(uaddr) + pgoff))
    c = sim.metrics.counters
    run(sim, arena.free_pages(0, uaddr, 2))
    assert c["tlb.user_shootdowns"] == 1
    assert c["tlb.user_ipis"] == 2  # CPUs 2 and 3, not the freeing CPU 0
    assert c["tlb.ipis"] == 3  # the kernel view: every other CPU
    assert not arena.user
