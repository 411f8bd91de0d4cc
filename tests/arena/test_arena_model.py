"""The arena model's kernel facts: layout, faults, deferred frees, teardown."""

import tracemalloc

import pytest

from simcore.kernel.bpf.arena import (
    GUARD_SZ,
    KERN_VM_SZ,
    KERNEL_FAULT_NS,
    SZ_4G,
    BpfArena,
    UserMm,
)
from tests.arena import new_arena, quiet_sim, run_arena
from tests.kernel import run


def test_layout_4g_window_and_user_vma_within_a_4g_slot():
    sim = quiet_sim("arena_4k", "6.13")
    mm = UserMm([3])
    for pages in (1, 1000, 1 << 20):  # 4 KiB, ~4 MiB, 4 GiB
        a = run(sim, BpfArena.create(sim.kernel, 0, pages))
        run(sim, a.mmap(0, mm))
        assert a.kern_vm.size >= KERN_VM_SZ  # 4 GiB + 64 KiB whatever the size
        assert a.kern_vm_start == a.kern_vm.addr + GUARD_SZ // 2
        assert a.user_vm_start >> 32 == (a.user_vm_end - 1) >> 32
        # every page's kernel address is kern_vm_start + (u32)uaddr, inside
        first, last = a.kaddr(0), a.kaddr(pages - 1)
        assert first == a.kern_vm_start + (a.user_vm_start & 0xFFFFFFFF)
        assert a.kern_vm.addr <= first and last + 4096 <= a.kern_vm.end
        assert a.compute_pgoff(a.uaddr(pages - 1)) == pages - 1
    assert sim.metrics.counters["mem.arena.kva_bytes"] >= 3 * KERN_VM_SZ


def test_spinlock_era_prepopulates_the_window_page_tables():
    lazy = quiet_sim("arena_4k", "6.13")
    eager = quiet_sim("arena_4k", "latest")
    for sim in (lazy, eager):
        before = sim.metrics.counters["mem.pagetable_pages"]
        new_arena(sim, 16)
        sim.tables = sim.metrics.counters["mem.pagetable_pages"] - before
    assert lazy.tables == 0
    # 2,049 PTE tables for 4 GiB + 32 KiB, plus the PMD tables: ~8 MiB
    assert 2049 <= eager.tables <= 2049 + 6
    assert eager.env.now - lazy.env.now > 1_000_000  # ~1M callback visits


def test_allocation_fails_cleanly_and_at_fixed_addresses():
    sim = quiet_sim("arena_4k", "latest")
    a = new_arena(sim, 64)
    assert run(sim, a.alloc_pages(0, 0, 65)) == 0  # larger than the VMA
    u = run(sim, a.alloc_pages(0, a.uaddr(10), 4))
    assert u == a.uaddr(10)
    assert run(sim, a.alloc_pages(0, a.uaddr(12), 1)) == 0  # taken
    assert run(sim, a.alloc_pages(0, a.uaddr(12) + 8, 1)) == 0  # unaligned
    # best fit: the smallest hole that holds the request
    assert run(sim, a.alloc_pages(0, 0, 9)) == a.uaddr(0)
    assert sim.metrics.counters["arena.alloc_failures"] == 3
    a.check()


def test_user_fault_maps_bpf_pages_and_allocates_absent_ones():
    sim = quiet_sim("arena_4k", "6.13")
    a = new_arena(sim, 64)
    u = run(sim, a.alloc_pages(0, 0, 1))
    pg = a.compute_pgoff(u)
    assert run(sim, a.user_fault(3, pg)) == a.pfn[pg]
    c = sim.metrics.counters
    assert c["arena.user_fault_allocs"] == 0
    pfn = run(sim, a.user_fault(3, 40))  # untouched: allocated by the fault
    assert pfn == a.pfn[40] == a.user[40]
    assert c["arena.user_fault_allocs"] == 1
    assert not a.rt.free_in(40, 1)
    a.check()


def test_segv_on_fault():
    sim = quiet_sim("arena_4k", "6.13")
    a = new_arena(sim, 64, segv_on_fault=True)
    assert run(sim, a.user_fault(3, 5)) is None
    assert sim.metrics.counters["arena.user_sigsegv"] == 1
    assert 5 not in a.pfn


def test_fixup_faults_every_time_scratch_page_once():
    fixup = quiet_sim("arena_4k", "6.13")
    a = new_arena(fixup, 64)
    t0 = fixup.env.now
    for _ in range(3):
        assert not run(fixup, a.kernel_fault(0, 7))
    assert fixup.env.now - t0 == 3 * KERNEL_FAULT_NS
    assert fixup.metrics.counters["arena.kernel_faults"] == 3

    scratch = quiet_sim("arena_4k", "latest")
    b = new_arena(scratch, 64)
    assert run(scratch, b.kernel_fault(0, 7))
    assert 7 in b.scratch  # mapped now: later accesses do not fault
    assert scratch.pagetables.pfn_of(b.kaddr(7)) == b.scratch_pfn
    assert scratch.metrics.counters["arena.scratch_installs"] == 1
    # a user touch of a scratched page is a SIGSEGV, not an allocation
    assert run(scratch, b.user_fault(3, 7)) is None
    # allocating over it clears the scratch PTE and flushes that page first
    shoot = scratch.metrics.counters["tlb.shootdowns"]
    assert run(scratch, b.alloc_pages(0, b.uaddr(7), 1))
    assert 7 not in b.scratch and b.pfn[7] != b.scratch_pfn
    assert scratch.metrics.counters["tlb.shootdowns"] == shoot + 1
    b.check()


def test_non_sleepable_frees_go_through_the_worker():
    sim = quiet_sim("arena_4k", "latest")
    a = new_arena(sim, 64)
    us = [run(sim, a.alloc_pages(0, 0, 1)) for _ in range(5)]
    c = sim.metrics.counters
    for u in us:
        run(sim, a.free_pages(0, u, 1, sleepable=False))
    assert c["arena.deferred_frees"] == 5
    assert len(a.pfn) == 5  # not yet: queued for the irq_work
    sim.env.run(until=a.deferred_done())
    assert not a.pfn and c["arena.free_worker_runs"] == 1  # one lock hold
    assert c["arena.kernel_flushes"] == 5  # then one flush per span
    assert a.held == 1  # the scratch page
    a.check()


def test_non_sleepable_free_needs_the_spinlock_era():
    from simcore.errors import SimulationError

    sim = quiet_sim("arena_4k", "6.13")
    a = new_arena(sim, 64)
    u = run(sim, a.alloc_pages(0, 0, 1))
    with pytest.raises(SimulationError, match="non-sleepable"):
        run(sim, a.free_pages(0, u, 1, sleepable=False))


@pytest.mark.parametrize("preset", ["6.13", "latest"])
def test_teardown_returns_pages_and_purges_the_kva(preset):
    body = """\
    size: 64MiB
    populate: {pages: 300}
    churn: {rate: 100000/s, lifetime: 100us, sleepable: SLEEP}
    bpf: {cpus: 2, rate: 1000000/s}
    user: {cpus: 1, rate: 100000/s}
    destroy_at: 8ms
""".replace("SLEEP", "true" if preset == "6.13" else "false")
    m = run_arena(body, "arena_4k", preset, duration="20ms")
    assert m["arena.arenas"] == 0
    assert m["mem.arena.backed_bytes"] == 0
    assert m["mem.arena.allocated_bytes"] == 0
    assert m["mem.arena.kva_bytes"] == 0
    assert m["mem.arena.peak_backed_bytes"] >= 300 * 4096
    # 1M pages of lazy KVA: past lazy_max_pages, so a purge and full flush
    assert m["vmap.lazy_purges"] >= 1 and m["tlb.full_flushes"] >= 1
    assert m["alloc.arena_map_free.count"] == 1


def test_memory_follows_populated_pages_not_arena_size():
    """A 4 GiB arena costs the model what a 64 MiB one does."""

    def peak(size_pages: int) -> int:
        sim = quiet_sim("arena_4k", "6.13")
        tracemalloc.start()
        a = new_arena(sim, size_pages)
        for _ in range(8):
            run(sim, a.alloc_pages(0, 0, 256))
        run(sim, a.user_fault(3, size_pages - 1))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, big = peak(1 << 14), peak(SZ_4G >> 12)
    print("model bytes, 64 MiB vs 4 GiB arena, 2049 pages:", small, big)
    assert big < 4 << 20
    assert abs(big - small) < 256 << 10
