"""vm_map_ram()'s per-CPU vmap blocks: sizing, bump allocation, purging."""

from __future__ import annotations

from simcore.constants import PAGE
from simcore.kernel.vmalloc import (
    NR_CPUS,
    VMAP_BBMAP_BITS,
    VMAP_BLOCK,
    VMAP_BLOCK_SIZE,
    VMAP_PURGE_THRESHOLD,
    VMAP_RAM,
    vmap_bbmap_bits,
)
from tests.kernel import pfns, run
from tests.kernel.test_vmalloc import make_sim


def record_flushes(sim):
    flushes: list[tuple[int, int]] = []
    orig = sim.machine.flush.kernel_range

    def kernel_range(cpu, start, end):
        flushes.append((start, end))
        return orig(cpu, start, end)

    sim.machine.flush.kernel_range = kernel_range
    return flushes


def test_block_size_follows_the_kernel_formula():
    # min(1024, max(128, 128 GiB / 4 KiB / roundup_pow_of_two(NR_CPUS) / 16))
    assert NR_CPUS == 8192 and VMAP_BBMAP_BITS == 256
    assert VMAP_BLOCK_SIZE == 1 << 20
    assert vmap_bbmap_bits(512) == 1024  # capped: 4 MiB blocks
    assert vmap_bbmap_bits(4096) == 512
    assert vmap_bbmap_bits(5000) == 256  # rounded up to 8192
    assert vmap_bbmap_bits(1 << 20) == 128  # floor: 2 * VMAP_MAX_ALLOC
    assert VMAP_PURGE_THRESHOLD == 64


def test_bump_allocation_never_reuses_holes():
    sim = make_sim(bare=True)
    vm = sim.vmalloc

    def body():
        a = []
        for _ in range(3):
            a.append((yield from vm.vm_map_ram(0, pfns(1))))
        yield from vm.vm_unmap_ram(0, a[1], 1)
        b = yield from vm.vm_map_ram(0, pfns(3))  # order 2: four pages
        c = yield from vm.vm_map_ram(0, pfns(1))
        return a, b, c

    a, b, c = run(sim, body())
    assert a[0] % VMAP_BLOCK_SIZE == 0  # a block is aligned to its size
    assert a[1] == a[0] + PAGE and a[2] == a[0] + 2 * PAGE
    assert b == a[0] + 3 * PAGE  # the hole at a[1] stays dirty, unused
    assert c == b + 4 * PAGE
    blk = vm.find_vmap_area(a[0])
    assert blk.va_flags == VMAP_RAM | VMAP_BLOCK and blk.size == VMAP_BLOCK_SIZE
    assert sim.metrics.counters["vmap.blocks"] == 1
    vm.check()


def test_each_cpu_allocates_from_its_own_block():
    sim = make_sim(bare=True)
    vm = sim.vmalloc

    def body():
        x = yield from vm.vm_map_ram(0, pfns(1))
        y = yield from vm.vm_map_ram(1, pfns(1))
        z = yield from vm.vm_map_ram(0, pfns(1))
        return x, y, z

    x, y, z = run(sim, body())
    assert x // VMAP_BLOCK_SIZE != y // VMAP_BLOCK_SIZE
    assert z == x + PAGE
    assert sim.metrics.counters["vmap.blocks"] == 2


def test_fully_dirty_block_goes_through_the_lazy_path():
    sim = make_sim(bare=True, sets=("kernel.lazy_max_pages=100000",))
    vm = sim.vmalloc
    flushes = record_flushes(sim)

    def body():
        addrs = []
        for _ in range(VMAP_BBMAP_BITS):
            addrs.append((yield from vm.vm_map_ram(0, pfns(1))))
        assert not vm._vbq(0).free  # a full block leaves the free list
        for a in addrs:
            yield from vm.vm_unmap_ram(0, a, 1)
        return addrs[0]

    start = run(sim, body())
    assert vm.find_vmap_area(start) is None  # unlinked from the busy tree
    assert vm.lazy_nr == VMAP_BBMAP_BITS and not flushes  # freed, not flushed
    assert sim.metrics.counters["vmap.block_frees"] == 1
    run(sim, vm.purge(0))
    assert (
        flushes and flushes[0][0] <= start and start + VMAP_BLOCK_SIZE <= flushes[0][1]
    )
    vm.check()


def test_vm_unmap_aliases_flushes_the_dirty_range_once():
    sim = make_sim(bare=True)
    vm = sim.vmalloc
    flushes = record_flushes(sim)

    def body():
        addrs = []
        for _ in range(10):
            addrs.append((yield from vm.vm_map_ram(0, pfns(1))))
        for a in addrs[2:5]:
            yield from vm.vm_unmap_ram(0, a, 1)
        yield from vm.vm_unmap_aliases(3)
        first = list(flushes)
        yield from vm.vm_unmap_aliases(3)
        return addrs, first

    addrs, first = run(sim, body())
    assert first == [(addrs[2], addrs[4] + PAGE)]  # just the dirty pages
    assert flushes == first  # the second call found nothing to flush
    assert sim.metrics.counters["vmap.unmap_aliases"] == 2


def test_fragmented_blocks_are_purged_below_the_threshold_or_when_forced():
    sim = make_sim(bare=True, sets=("kernel.lazy_max_pages=100000",))
    vm = sim.vmalloc

    def churn(cpu, n):
        addrs = []
        for _ in range(n):
            addrs.append((yield from vm.vm_map_ram(cpu, pfns(1))))
        for a in addrs:
            yield from vm.vm_unmap_ram(cpu, a, 1)
        return addrs[0]

    # free = 56 < VMAP_PURGE_THRESHOLD: purged by vm_unmap_aliases()
    low = run(sim, churn(0, VMAP_BBMAP_BITS - 56))
    # free = 156: still usable, only its dirty range is flushed
    high = run(sim, churn(1, VMAP_BBMAP_BITS - 156))
    run(sim, vm.vm_unmap_aliases(2))
    assert vm.find_vmap_area(low) is None
    assert vm.find_vmap_area(high) is not None
    assert sim.metrics.counters["vmap.block_frees"] == 1
    # reclaim_and_purge_vmap_areas() forces it
    run(sim, vm.reclaim_and_purge(2))
    assert vm.find_vmap_area(high) is None
    assert sim.metrics.counters["vmap.block_frees"] == 2
    vm.check()


def test_large_requests_bypass_the_blocks():
    sim = make_sim(bare=True, sets=("kernel.lazy_max_pages=100000",))
    vm = sim.vmalloc
    addr = run(sim, vm.vm_map_ram(0, pfns(65)))  # > VMAP_MAX_ALLOC pages
    va = vm.find_vmap_area(addr)
    assert va.va_flags == VMAP_RAM and va.size == 65 * PAGE  # no guard page
    assert "vmap.blocks" not in sim.metrics.counters
    run(sim, vm.vm_unmap_ram(0, addr, 65))
    assert vm.lazy_nr == 65


def test_vread_reads_only_the_mapped_parts_of_a_block():
    sim = make_sim(bare=True)
    vm = sim.vmalloc

    def body():
        a = yield from vm.vm_map_ram(0, pfns(2))
        b = yield from vm.vm_map_ram(0, pfns(1))
        yield from vm.vm_map_ram(0, pfns(4))
        yield from vm.vm_unmap_ram(0, b, 1)
        return a, (yield from vm.vread(1, a, VMAP_BLOCK_SIZE))

    a, r = run(sim, body())
    assert r.copied == 6 * PAGE and r.zeroed == VMAP_BLOCK_SIZE - 6 * PAGE
    assert r.areas == 1

    old = make_sim(preset="6.1", bare=True)  # before v6.3: skipped entirely
    a = run(old, old.vmalloc.vm_map_ram(0, pfns(2)))
    r = run(old, old.vmalloc.vread(1, a, 2 * PAGE))
    assert r.copied == 0 and r.zeroed == 2 * PAGE


def test_vm_map_ram_workload_mode(write):
    from simcore.config.load import load_workload
    from simcore.engine import Simulation

    wl = write(
        """\
        name: vmr
        duration: 300us
        machine: {profile: small-test}
        kernel: {preset: latest, lazy_max_pages: 1024}
        workloads:
          - {type: vmalloc_stress, vm_map_ram: true, nr_pages: 4}
        """
    )
    m = Simulation(load_workload(wl), "module_alloc").run().metrics
    assert m["alloc.vm_map_ram.count"] > 1000
    assert m["alloc.vm_unmap_ram.count"] >= m["alloc.vm_map_ram.count"] - 4
    assert m["vmap.block_frees"] >= 1 and m["vmap.lazy_purges"] >= 1
    assert "alloc.vmalloc.count" not in m
