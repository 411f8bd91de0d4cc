"""kernel/bpf/arena.c, pages in: ``bpf_arena_alloc_pages()``, and the
steps a strategy backs and maps fresh pages with.

Kernel functions modelled:

- ``arena_alloc_pages()`` (``bpf_arena_alloc_pages``): the page array, the
  lock, ``range_tree_find`` + ``range_tree_clear`` (or
  ``is_range_tree_set`` + clear at a fixed address), then in batches of at
  most 1024 pages ``bpf_map_alloc_pages()`` (one zeroed ``alloc_pages()``
  per page) and the kernel-view PTEs (``vm_area_map_pages()`` /
  ``apply_to_page_range()``, one PTE per page, no flush).
"""

from __future__ import annotations

from simcore.constants import PAGE_SIZE as PAGE
from simcore.kernel.bpf.arena_free import keys_in
from simcore.kernel.bpf.range_tree import ENOENT

# KMALLOC_MAX_CACHE_SIZE (two pages) / sizeof(struct page *): the page-array
# cap of the Dec 2025 tree, which allocates and maps in batches of this size
ARENA_BATCH = 2 * PAGE // 8


class ArenaAlloc:
    """The allocation path, mixed into
    :class:`~simcore.kernel.bpf.arena.BpfArena` (whose fields it uses)."""

    # -- pages in (strategies call these) --------------------------------------------
    def alloc_backing(self, cpu: int, n: int):
        """bpf_map_alloc_pages(): n zeroed order-0 pages, one alloc_pages()
        each; on failure the ones obtained go back and None is returned."""
        got: list[int] = []
        for _ in range(n):
            pfn = yield from self.pa.alloc_pages(cpu, 0, zero=True)
            if pfn is None:
                if got:
                    yield from self.pa.free_pages_batch(cpu, got)
                return None
            got.append(pfn)
        self._hold(n)
        return got

    def map_4k(self, cpu: int, pgoff: int, pfns: list[int]):
        """Kernel-view PTEs for pfns at pgoff: vm_area_map_pages() (mutex
        era, may allocate page tables) or apply_to_page_range() over
        pre-populated tables; one PTE store per page, no flush."""
        work = 0
        if self.scratch:
            # apply_range_set_cb(): a scratch PTE is cleared and flushed
            # before the real page goes in (break-before-make)
            for p in keys_in(self.scratch, pgoff, pgoff + len(pfns)):
                ka = self.kaddr(p)
                yield from self.pt.vunmap_range_noflush(cpu, ka, PAGE)
                work += self.flush_kernel(cpu, ka, ka + PAGE)
                self.scratch.discard(p)
                self.metrics.inc("arena.scratch_replaced")
        if work:
            yield self.env.timeout(work)
        ok = yield from self.pt.vmap_pages_range(cpu, self.kaddr(pgoff), pfns)
        if ok:
            for i, pfn in enumerate(pfns):
                self.pfn[pgoff + i] = pfn
        return ok

    def populate_4k(self, cpu: int, pgoff: int, n: int):
        """The allocation loop of arena_alloc_pages() with 4K pages: in
        batches of at most ARENA_BATCH, allocate then map. Returns the
        number of pages mapped."""
        done = 0
        while done < n:
            batch = min(n - done, ARENA_BATCH)
            pfns = yield from self.alloc_backing(cpu, batch)
            if pfns is None:
                break
            ok = yield from self.map_4k(cpu, pgoff + done, pfns)
            if not ok:
                yield from self.pa.free_pages_batch(cpu, pfns)
                self._hold(-len(pfns))
                break
            done += batch
        return done

    # -- bpf_arena_alloc_pages -----------------------------------------------------------
    def alloc_pages(self, cpu: int, uaddr: int, n: int):
        """arena_alloc_pages(): the user address of n fresh zeroed pages
        (at ``uaddr`` when non-zero), or 0."""
        t_start = self.env.now
        m = self.metrics
        page_cnt_max = self.nr_pages
        if n <= 0 or n > page_cnt_max:
            m.inc("arena.alloc_failures")
            return 0
        pgoff = 0
        if uaddr:
            if uaddr & (PAGE - 1):
                m.inc("arena.alloc_failures")
                return 0
            pgoff = self.compute_pgoff(uaddr)
            if pgoff > page_cnt_max - n:
                m.inc("arena.alloc_failures")
                return 0
        # kvcalloc() (mutex era) / kmalloc_nolock() (capped) of the array
        yield self.env.timeout(int(self.slab_ns))
        t0, work = yield from self.lock(cpu)
        if uaddr:
            ok = self.rt.is_set(pgoff, n)
            if ok:
                self.rt.clear(pgoff, n)
        else:
            pgoff = self.rt.find(n)
            ok = pgoff != ENOENT
            if ok:
                self.rt.clear(pgoff, n)
        work += self._tree_ns()
        yield self.env.timeout(int(work))
        if not ok:
            self.unlock(cpu, t0)
            m.inc("arena.alloc_failures")
            return 0
        mapped = yield from self.strategy.populate(cpu, self, pgoff, n)
        if mapped < n:
            # out: range_tree_set() of what was not mapped, free the rest
            self.rt.set(pgoff + mapped, n - mapped)
            yield self.env.timeout(int(self._tree_ns()))
            self.unlock(cpu, t0)
            if mapped:
                self._use(mapped)
                yield from self.free_pages(cpu, self.uaddr(pgoff), mapped)
            m.inc("arena.alloc_failures")
            return 0
        self.unlock(cpu, t0)
        self._use(n)
        m.inc("arena.allocs")
        m.inc("arena.alloc_pages", n)
        m.latency("arena_alloc", self.env.now - t_start)
        return self.uaddr(pgoff)
