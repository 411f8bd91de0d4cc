"""Checks shared by the long property tests.

Simulations come from the existing helpers (``tests.kernel.make_sim``,
``tests.kernel.test_vmalloc.make_sim``, ``tests.arena.quiet_sim``); this
module only adds what those tests check at the end and the long tests check
after every batch of operations:

- locks: every ``SpinLock``/``Mutex`` a simulation created (recorded by the
  fixture in ``tests/long/conftest.py``) is free and has no waiters once the
  background work (kworkers, purges, cleaners) has finished (:func:`settle`);
- PTEs: what is mapped outside the direct map is exactly the pages of the
  live areas, at their addresses (:func:`assert_ptes`);
- pages: every page the buddy allocator has handed out since the start is
  in a live object or is a page-table page, and no page is in two objects
  (:func:`assert_pages`);
- KVA: no range is handed out while live, or again before a flush covered
  it (:class:`KvaWatch`, the bookkeeping of
  ``tests.kernel.test_vmalloc.test_interleavings_keep_kva_sound``).

``long_settings`` sizes each test from the active Hypothesis profile and
``checked`` counts the interleavings that passed every check.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable

from hypothesis import HealthCheck, settings

from simcore.constants import PAGE
from simcore.kernel.vmalloc import VM_ALLOC

PMD_SHIFT = 21
PTES_PER_TABLE = 512


# -- examples and their count -----------------------------------------------------
def budget(share: float) -> int:
    """Examples for one test: ``share`` of the active profile's
    ``max_examples`` (see ``tests/conftest.py``), at least one."""
    return max(1, round(settings.default.max_examples * share))


def long_settings(share: float) -> settings:
    """``settings`` of a long test: :func:`budget` examples, no deadline
    (simulations of a few hundred operations take tens of milliseconds)."""
    return settings(
        max_examples=budget(share),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# interleavings that passed every check, and the operations they ran
# (printed by tests/long/conftest.py)
CHECKED = [0, 0]


def checked(ops: int) -> None:
    """One interleaving of ``ops`` operations passed every check."""
    CHECKED[0] += 1
    CHECKED[1] += ops


# things worth knowing that are no failure (e.g. allocations a modelled
# kernel race made fail), counted and printed at the end
NOTES: Counter[str] = Counter()


# -- locks --------------------------------------------------------------------------
# every lock created while the long tests run, by the SimPy environment of
# its simulation (weakly: a finished simulation's locks go with it)
LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def recording(init):
    """``SpinLock.__init__`` (Mutex's too) that also records the lock."""

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        locks = LOCKS.get(self.env)
        if locks is None:
            locks = LOCKS[self.env] = weakref.WeakSet()
        locks.add(self)

    return __init__


def locks_of(sim) -> list[tuple[str, object]]:
    """Every lock of ``sim``, with the name it reports its statistics as."""
    names = {id(st): name for name, st in sim.machine.lock_stats.items()}
    return [(names.get(id(lk.stats), "?"), lk) for lk in LOCKS.get(sim.env, ())]


def busy_locks(sim) -> list[str]:
    return [
        f"{name} (held by CPU {lk.owner}, {len(lk.waiters)} waiting)"
        for name, lk in locks_of(sim)
        if lk.owner is not None or lk.waiters
    ]


def background_idle(sim) -> bool:
    """No deferred work queued: the lazy-purge drain, the ROX cache cleaner."""
    return not sim.vmalloc.drain_pending and not getattr(
        sim.strategy, "clean_pending", False
    )


def settle(
    sim, idle: Callable[[], bool] | None = None, *, limit_ns: int = 100_000_000
) -> None:
    """Run until no lock is held or waited for and the background work is
    done; fail naming the busy locks if that takes over ``limit_ns``."""
    assert sim.env in LOCKS, "no lock recorded: is tests/long/conftest.py in use?"
    env = sim.env
    end = env.now + limit_ns
    step = 10_000
    while True:
        busy = busy_locks(sim)
        if not busy and background_idle(sim) and (idle is None or idle()):
            return
        if env.now >= end:
            raise AssertionError(
                f"not released {limit_ns} ns after the last operation: "
                f"{', '.join(busy) or 'background work still pending'}"
            )
        env.run(until=env.now + step)
        step = min(2 * step, 1_000_000)


# -- PTEs ---------------------------------------------------------------------------
def vmap_ptes(pt, lo: int = 0, hi: int = 1 << 64) -> dict[int, int]:
    """Every 4 KiB address in [lo, hi) mapped outside the direct map, with
    the pfn behind it (2 MiB leaves counted page by page)."""
    out: dict[int, int] = {}
    vm = pt.vmap
    for idx, t in vm.ptes.items():
        base = idx << PMD_SHIFT
        if base + (1 << PMD_SHIFT) <= lo or base >= hi or t.empty():
            continue  # (an arena prepopulates 2,048 tables, most stay empty)
        for i, pfn in enumerate(t.pfns):
            if pfn >= 0:
                out[base + i * PAGE] = pfn
    for idx, (head, _flags) in vm.huge.items():
        base = idx << PMD_SHIFT
        if base + (1 << PMD_SHIFT) <= lo or base >= hi:
            continue
        for i in range(PTES_PER_TABLE):
            out[base + i * PAGE] = head + i
    if lo > 0 or hi < 1 << 64:
        out = {a: p for a, p in out.items() if lo <= a < hi}
    return out


def busy_areas(vm) -> list:
    return [a for vn in vm.nodes for a in vn.busy.values()]


def vmalloc_ptes(vm) -> dict[int, int]:
    """What vmalloc()ed areas map: each page of each busy VM_ALLOC area at
    its place (the guard page unmapped)."""
    out: dict[int, int] = {}
    for a in busy_areas(vm):
        if a.flags & VM_ALLOC:
            assert len(a.pages) == a.nr_pages, f"area {a.addr:#x} lost pages"
            for i, pfn in enumerate(a.pages):
                out[a.addr + i * PAGE] = pfn
    return out


def assert_ptes(sim, want: dict[int, int], *, lo: int = 0, hi: int = 1 << 64) -> None:
    """The PTEs mapped in [lo, hi) are exactly ``want`` (address -> pfn)."""
    got = vmap_ptes(sim.pagetables, lo, hi)
    if got == want:
        return
    extra = sorted(set(got) - set(want))
    missing = sorted(set(want) - set(got))
    wrong = sorted(a for a in set(got) & set(want) if got[a] != want[a])
    raise AssertionError(
        "PTEs and live areas differ: "
        f"{len(extra)} mapped outside every live area {[hex(a) for a in extra[:4]]}, "
        f"{len(missing)} pages of live areas unmapped "
        f"{[hex(a) for a in missing[:4]]}, "
        f"{len(wrong)} mapping the wrong page {[hex(a) for a in wrong[:4]]}"
    )


# -- pages --------------------------------------------------------------------------
def table_pages(sim) -> int:
    """Page-table pages allocated so far (vmalloc tables, direct-map splits)."""
    c = sim.metrics.counters
    return c.get("mem.pagetable_pages", 0) + c.get("directmap.pagetable_pages", 0)


def page_state(sim) -> tuple[int, int]:
    """What :func:`assert_pages` compares against: the allocated and the
    page-table pages now."""
    return sim.page_alloc.buddy.nr_allocated_pages, table_pages(sim)


def allocated(buddy) -> set[int]:
    """Every page the buddy allocator has handed out: whole blocks, and the
    pages of split blocks not freed yet."""
    out = {p for pfn, k in buddy.allocated.items() for p in range(pfn, pfn + (1 << k))}
    for (head, _), (_, mask) in buddy.split.items():
        out.update(head + i for i in range(mask.bit_length()) if mask >> i & 1)
    return out


def assert_pages(
    sim, start: tuple[int, int], held: Iterable[int], *, full: bool = True
) -> None:
    """Every page handed out since ``start`` (see :func:`page_state`) is in
    ``held`` (the pages of the live objects) or is a page-table page; no
    page is held twice; each held page is allocated; the direct map still
    covers all RAM."""
    b = sim.page_alloc.buddy
    b.check(full=full)
    pfns = list(held)
    once = set(pfns)
    assert len(once) == len(pfns), "a page is in two live objects"
    lost = sorted(once - allocated(b))
    assert not lost, f"live objects hold free pages {[hex(p) for p in lost[:4]]}"
    pages0, tables0 = start
    grown = b.nr_allocated_pages - pages0
    tables = table_pages(sim) - tables0
    assert grown == len(once) + tables, (
        f"{grown} pages allocated since the start: {len(once)} in live objects "
        f"and {tables} page-table pages (leaked {grown - len(once) - tables})"
    )
    assert sum(sim.pagetables.direct.bytes()) == b.total_pages * PAGE


def area_pages(vm) -> list[int]:
    """The pages of every busy vmalloc()ed area."""
    return [p for a in busy_areas(vm) if a.flags & VM_ALLOC for p in a.pages]


# -- KVA ----------------------------------------------------------------------------
class KvaWatch:
    """Ranges the test holds, and freed ranges no flush has covered yet:
    a range handed out must overlap neither (the bookkeeping of
    ``test_interleavings_keep_kva_sound``, kept across batches)."""

    def __init__(self, sim) -> None:
        flush = sim.machine.flush
        self.unflushed: list[tuple[int, int]] = []
        self.live: dict[int, tuple[int, str]] = {}  # start -> (end, kind)
        orig = flush.kernel_range

        def kernel_range(cpu, start, end):
            if -(-(end - start) // PAGE) > flush.ceiling:
                self.unflushed.clear()  # a full flush
            else:
                self.unflushed[:] = [
                    r for r in self.unflushed if not (start <= r[0] and r[1] <= end)
                ]
            return orig(cpu, start, end)

        flush.kernel_range = kernel_range

    def handed_out(self, start: int, end: int, kind: str) -> None:
        for s, e in self.unflushed:
            assert not (s < end and start < e), (
                f"{kind} {start:#x}-{end:#x} reuses {s:#x}-{e:#x} before a flush"
            )
        for s, (e, k) in self.live.items():
            assert not (s < end and start < e), (
                f"{kind} {start:#x}-{end:#x} overlaps live {k} {s:#x}-{e:#x}"
            )
        self.live[start] = (end, kind)

    def taken_back(self, start: int) -> None:
        end, _ = self.live.pop(start)
        self.unflushed.append((start, end))


def lazy_pages(vm) -> int:
    """Pages of KVA freed lazily and not purged yet, counted from the lists
    (vmap_lazy_nr must equal it)."""
    if vm.per_node:
        return sum(
            a.size // PAGE for vn in vm.nodes for a in (*vn.lazy, *vn.purge_list)
        )
    return sum(e - s for s, e in vm.lazy_tree.blocks()) // PAGE


def assert_kva(vm) -> None:
    """The vmap space tiles the address space (``Vmalloc.check()``) and its
    counters agree with its lists."""
    vm.check()
    busy = sum(a.size for a in busy_areas(vm))
    assert vm.used_bytes == busy, f"vmap.used_bytes {vm.used_bytes} != busy {busy}"
    assert vm.lazy_nr == lazy_pages(vm), (
        f"vmap_lazy_nr {vm.lazy_nr} != {lazy_pages(vm)} pages on the lazy lists"
    )


# -- vm_map_ram steps the concurrent tests share ------------------------------
def map_ram(vm, watch, maps: dict, cpu: int, n: int, pfns):
    """vm_map_ram() of ``n`` fresh pages; a mapping made is watched."""
    pages = pfns(n)
    addr = yield from vm.vm_map_ram(cpu, pages)
    if addr is not None:
        watch.handed_out(addr, addr + n * PAGE, "vm_map_ram")
        maps[addr] = pages


def unmap_ram(vm, watch, maps: dict, cpu: int, pick: int):
    """vm_unmap_ram() of the live mapping ``pick`` selects."""
    addr = sorted(maps)[pick % len(maps)]
    pages = maps.pop(addr)
    watch.taken_back(addr)
    yield from vm.vm_unmap_ram(cpu, addr, len(pages))
