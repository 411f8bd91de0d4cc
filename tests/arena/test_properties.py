"""Property tests of the arena model, every strategy in both eras.

Random rounds of concurrent operations (BPF allocations at any or a fixed
address, frees of live allocations or of arbitrary ranges, sleepable or
deferred, user faults, BPF touches of unallocated pages, batches of
accesses through the TLBs) run on one arena; after every round and at
teardown:

- each page is mapped in the kernel view at most once, where the arena
  thinks it is, and is allocated in the buddy allocator (``check()``);
- the user view maps exactly what the kernel view maps at that offset;
- a page going back to the buddy allocator is mapped in neither view, and
  each view's address for it was flushed after its PTE was cleared (freed
  pages are unmapped and flushed before reuse; the flush model is what
  drops the TLB entries). Teardown is exempt from the kernel-view flush:
  arena_map_free() frees pages before the KVA purge flushes, relying on
  nothing touching the arena any more, and the model keeps that;
- after teardown every page the arena took is back: the allocator holds
  only the page-table pages vmalloc never frees.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.arena import ERAS, STRATEGIES, new_arena, quiet_sim
from tests.kernel import run

PAGES = 2048
USER_CPU = 3

op = st.one_of(
    st.tuples(
        st.just("alloc"),
        st.sampled_from([1, 1, 1, 3, 16, 512, 600]),
        st.one_of(st.none(), st.integers(0, PAGES - 1)),
    ),
    st.tuples(st.just("free"), st.integers(0, 1000), st.booleans()),
    st.tuples(
        st.just("free_range"),
        st.integers(0, PAGES - 1),
        st.integers(1, 40),
        st.booleans(),
    ),
    st.tuples(st.just("utouch"), st.integers(0, PAGES - 1)),
    st.tuples(st.just("btouch"), st.integers(0, PAGES - 1)),
    st.tuples(st.just("access"), st.integers(0, 2)),
    st.tuples(st.just("settle")),
)
rounds = st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=12)


class Watch:
    """Records when each page left each view and when ranges were flushed,
    and checks every page going back to the buddy allocator."""

    def __init__(self, sim, arena):
        self.sim = sim
        self.arena = arena
        self.kaddr_of: dict[int, int] = {}
        self.uaddr_of: dict[int, int] = {}
        self.k_unmapped: dict[int, int] = {}  # pfn -> time its PTE went
        self.u_unmapped: dict[int, int] = {}
        self.k_flushes: list[tuple[int, int, int]] = []  # (time, start, end)
        self.u_flushes: list[tuple[int, int, int]] = []
        self.tearing_down = False
        pt, pa, fl = sim.pagetables, sim.page_alloc, sim.machine.flush
        vmap, clear = pt.vmap_pages_range, pt.vmap.clear
        batch, single = pa.free_pages_batch, pa.free_pages
        kflush, uflush = fl.kernel_range, fl.user_range
        now = lambda: sim.env.now  # noqa: E731

        def vmap_pages_range(cpu, addr, pfns, **kw):
            huge = kw.get("page_shift", 12) == 21
            for i, pfn in enumerate(pfns):
                self.kaddr_of[pfn] = addr if huge else addr + (i << 12)
                self.k_unmapped.pop(pfn, None)
            return (yield from vmap(cpu, addr, pfns, **kw))

        def vmap_clear(addr, size):
            end = addr + size
            for idx in range(addr >> 21, ((end - 1) >> 21) + 1):
                gone = []
                if idx in pt.vmap.huge:
                    head = pt.vmap.huge[idx][0]
                    gone = range(head, head + 512)
                elif idx in pt.vmap.ptes:
                    i = (max(addr, idx << 21) >> 12) & 511
                    j = ((min(end, (idx + 1) << 21) - 1) >> 12 & 511) + 1
                    gone = [p for p in pt.vmap.ptes[idx].pfns[i:j] if p >= 0]
                for pfn in gone:
                    self.k_unmapped.setdefault(pfn, now())
            return clear(addr, size)

        def kernel_range(cpu, start, end):
            self.k_flushes.append((now(), start, end))
            return kflush(cpu, start, end)

        def user_range(cpu, start, end, cpus):
            self.u_flushes.append((now(), start, end))
            return uflush(cpu, start, end, cpus)

        def free_pages_batch(cpu, pfns):
            self.gone(list(pfns))
            return (yield from batch(cpu, pfns))

        def free_pages(cpu, pfn, order=0):
            self.gone(list(range(pfn, pfn + (1 << order))))
            return (yield from single(cpu, pfn, order))

        pt.vmap_pages_range = vmap_pages_range
        pt.vmap.clear = vmap_clear
        fl.kernel_range = kernel_range
        fl.user_range = user_range
        pa.free_pages_batch = free_pages_batch
        pa.free_pages = free_pages
        arena.user = UserView(self)

    @staticmethod
    def flushed(flushes, addr: int, since: int) -> bool:
        """A flush at or after ``since`` covered ``addr`` (past 33 pages a
        flush is a full one and covers everything)."""
        return any(
            t >= since and (lo <= addr < hi or hi - lo > 33 * 4096)
            for t, lo, hi in flushes
        )

    def gone(self, pfns: list[int]) -> None:
        a = self.arena
        mine = [p for p in pfns if p in self.kaddr_of]
        assert not set(mine) & set(a.user.values()), "freed page still user-mapped"
        for pfn in mine:
            if pfn in self.uaddr_of:
                since = self.u_unmapped.get(pfn)
                assert since is not None, f"pfn {pfn:#x} freed, user PTE kept"
                assert self.flushed(self.u_flushes, self.uaddr_of[pfn], since), (
                    f"pfn {pfn:#x} freed before its user mapping was flushed"
                )
            if self.tearing_down:
                continue  # arena_map_free() frees first, the KVA purge flushes
            mp = self.sim.pagetables.lookup(self.kaddr_of[pfn])
            assert mp is None or not mp.present or mp.pfn != pfn, "freed page mapped"
            since = self.k_unmapped[pfn]
            assert self.flushed(self.k_flushes, self.kaddr_of[pfn], since), (
                f"pfn {pfn:#x} freed before its kernel mapping was flushed"
            )


class UserView(dict):
    """arena.user, recording where and until when each page was mapped."""

    def __init__(self, watch):
        super().__init__()
        self.watch = watch

    def __setitem__(self, pgoff, pfn):
        w = self.watch
        w.uaddr_of[pfn] = w.arena.uaddr(pgoff)
        w.u_unmapped.pop(pfn, None)
        super().__setitem__(pgoff, pfn)

    def __delitem__(self, pgoff):
        self.watch.u_unmapped[self[pgoff]] = self.watch.sim.env.now
        super().__delitem__(pgoff)

    def clear(self):
        for pgoff in list(self):
            del self[pgoff]


def do(sim, arena, live, cpu, o):
    kind = o[0]
    spin = arena.spin_era
    if kind == "alloc":
        _, n, fixed = o
        uaddr = arena.uaddr(fixed) if fixed is not None else 0
        got = yield from arena.alloc_pages(cpu, uaddr, n)
        if got:
            live.append((got, n))
    elif kind == "free" and live:
        uaddr, n = live.pop(o[1] % len(live))
        yield from arena.free_pages(cpu, uaddr, n, sleepable=o[2] or not spin)
    elif kind == "free_range":
        _, pgoff, n, sleepable = o
        # live allocations overlapping the range are freed with it
        live[:] = [
            (u, k)
            for u, k in live
            if arena.compute_pgoff(u) + k <= pgoff
            or arena.compute_pgoff(u) >= pgoff + n
        ]
        yield from arena.free_pages(cpu, arena.uaddr(pgoff), n, sleepable or not spin)
    elif kind == "utouch":
        if o[1] not in arena.user:
            yield from arena.user_fault(USER_CPU, o[1])
    elif kind == "btouch":
        p = o[1]
        if p not in arena.scratch and arena.strategy.backing_pfn(arena, p) is None:
            yield from arena.kernel_fault(cpu, p)
    elif kind == "access":
        pg = np.array(
            sorted(arena.pfn) + [r << 9 for r in getattr(arena.priv, "head", {})]
        )
        if len(pg):
            addrs = np.array([arena.kaddr(p) for p in pg.tolist()], dtype=np.uint64)
            sim.executor.run(o[1], addrs, arena.strategy.kern_shifts(arena, pg), "d", 1)
        if arena.user:
            ua = np.array([arena.uaddr(p) for p in arena.user], dtype=np.uint64)
            sim.executor.run(USER_CPU, ua, 12, "d", 1)
    elif kind == "settle":
        yield sim.env.timeout(3_000_000)
    yield sim.env.timeout(0)


@pytest.mark.parametrize("preset", ERAS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=rounds)
def test_arena_invariants(strategy, preset, plan):
    sim = quiet_sim(strategy, preset)
    pa = sim.page_alloc
    base_pages = pa.buddy.nr_allocated_pages
    base_tables = sim.metrics.counters["mem.pagetable_pages"]
    arena = new_arena(sim, PAGES, mm_cpus=(USER_CPU,))
    watch = Watch(sim, arena)
    live: list[tuple[int, int]] = []
    for group in plan:
        procs = [
            sim.env.process(do(sim, arena, live, cpu, o)) for cpu, o in enumerate(group)
        ]
        sim.env.run(until=sim.env.all_of(procs))
        while (ev := arena.deferred_done()) is not None:
            sim.env.run(until=ev)  # views differ while a free is under way
        arena.check()
    watch.tearing_down = True
    run(sim, arena.destroy(0))
    sim.env.run(until=sim.env.now + 5_000_000)  # the lazy KVA purge
    assert arena.held == 0 and not arena.pfn and not arena.user
    tables = sim.metrics.counters["mem.pagetable_pages"] - base_tables
    assert pa.buddy.nr_allocated_pages - base_pages == tables
    c = sim.metrics.counters
    assert c["mem.arena.backed_bytes"] == 0
    assert c["mem.arena.allocated_bytes"] == 0
    assert c["mem.arena.kva_bytes"] == 0
    pa.buddy.check()
