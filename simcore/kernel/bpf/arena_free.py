"""kernel/bpf/arena.c, pages out: ``bpf_arena_free_pages()``, its
deferred form and ``zap_pages()``, and the steps a strategy unmaps,
flushes and gives back freed spans (:class:`FreedSpan`) with.

Kernel functions modelled:

- ``arena_free_pages()`` (``bpf_arena_free_pages``): ``range_tree_set``,
  kernel PTEs cleared, ``flush_tlb_kernel_range()`` to all CPUs, user pages
  zapped (``zap_pages()``: their own flush to the CPUs of the mm), pages
  freed. Mutex era: all under the mutex, one flush per page
  (``vm_area_unmap_pages()`` -> ``vunmap_range()``). Spinlock era: PTEs
  cleared under the lock, one flush for the whole range after it; from a
  non-sleepable program (or when the lock fails) the span is queued
  (``kmalloc_nolock``, ``llist_add``, ``irq_work_queue``) and
  ``arena_free_worker()`` does all queued spans in one lock hold, then per
  span a flush and a zap, then frees the pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.constants import PAGE_SHIFT
from simcore.constants import PAGE_SIZE as PAGE
from simcore.errors import SimulationError
from simcore.kernel.bpf.arena_mm import LO32

# zap_page_range_single() around the PTE clears: mmu_gather setup, the walk
# down to the range, tlb_finish_mmu(). Estimate: a few hundred ns.
ZAP_NS = 300


@dataclass(slots=True)
class FreedSpan:
    """What one free took out of the kernel view, to be flushed and freed."""

    pgoff: int
    n: int
    pfns: list[int] = field(default_factory=list)  # order-0 pages to free
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (pfn, order)
    kranges: list[tuple[int, int]] = field(default_factory=list)  # to flush
    zap_always: bool = False  # the worker zaps every span
    user_cleared: list[int] = field(default_factory=list)  # pgoffs zapped

    @property
    def pages(self) -> int:
        """Pages the span holds until given back."""
        return len(self.pfns) + sum(1 << order for _, order in self.blocks)


def pages_in(spans, pgoff: int, n: int) -> int:
    """Pages of [pgoff, pgoff + n) inside the (start, count) spans."""
    end = pgoff + n
    return sum(max(0, min(end, p + k) - max(pgoff, p)) for p, k in spans)


def keys_in(keys, lo: int, hi: int) -> list[int]:
    """Keys of a dict or set in [lo, hi), by the cheaper of the two walks."""
    if hi - lo <= len(keys):
        return [p for p in range(lo, hi) if p in keys]
    return sorted(p for p in keys if lo <= p < hi)


class ArenaFree:
    """The free path, mixed into
    :class:`~simcore.kernel.bpf.arena.BpfArena` (whose fields it uses)."""

    # -- pages out (strategies call these) -------------------------------------------
    def unmap_4k(self, cpu: int, pgoff: int, n: int, per_page: bool) -> FreedSpan:
        """Clear the kernel PTEs of [pgoff, pgoff + n) and collect the pages
        (no time: the caller charges :meth:`unmap_ns`). ``per_page`` (mutex
        era): one flush per page that was mapped; otherwise one flush over
        the whole range, mapped or not."""
        span = FreedSpan(pgoff, n)
        for p in keys_in(self.pfn, pgoff, pgoff + n):
            span.pfns.append(self.pfn.pop(p))
            if per_page:
                ka = self.kaddr(p)
                span.kranges.append((ka, ka + PAGE))
        # apply_range_clear_cb() clears scratch PTEs too, without freeing
        for p in keys_in(self.scratch, pgoff, pgoff + n):
            self.scratch.discard(p)
        self.pt.vmap.clear(self.kaddr(pgoff), n << PAGE_SHIFT)
        if not per_page:
            ka = self.kaddr(pgoff)
            span.kranges.append((ka, ka + (n << PAGE_SHIFT)))
        return span

    def unmap_ns(self, n: int, per_page: bool) -> float:
        """PTE-clearing cost of a free of n pages: a vmalloc_to_page() and
        a PTE clear per page (mutex era) or one callback per PTE slot of the
        range (apply_to_existing_page_range())."""
        return n * (self.pte_ns + (self.walk_ns if per_page else 0))

    def flush_kernel(self, cpu: int, start: int, end: int) -> int:
        """flush_tlb_kernel_range() to every CPU; returns the ns it takes."""
        self.metrics.inc("arena.kernel_flushes")
        self._per_free()
        return self.kernel.machine.flush.kernel_range(cpu, start, end)

    def _per_free(self) -> None:
        c = self.metrics.counters
        if c["arena.frees"]:
            c["arena.kernel_flushes_per_free"] = round(
                c["arena.kernel_flushes"] / c["arena.frees"], 6
            )

    def zap(self, cpu: int, span: FreedSpan, locked: bool, flush: bool = True):
        """zap_pages() (or, for one page not user-mapped, nothing): clear
        the user PTEs of the span in the VMA and, when any was present,
        flush them on the mm's CPUs (``flush=False`` leaves that to the
        caller). Takes arena->lock for the VMA list unless held."""
        pgoff, n = span.pgoff, span.n
        if n == 1 and not span.zap_always and pgoff not in self.user:
            return
        if not locked:
            extra = yield from self.mutex.take(cpu)
        else:
            extra = 0
        cleared = keys_in(self.user, pgoff, pgoff + n) if self.mm else []
        for p in cleared:
            del self.user[p]
        span.user_cleared = cleared
        ns = ZAP_NS + len(cleared) * self.pte_ns + extra
        if cleared and flush:
            ns += self.flush_user(cpu, cleared[0], cleared[-1] + 1)
        yield self.env.timeout(int(ns))
        if not locked:
            self.mutex.release(cpu)

    def flush_user(self, cpu: int, first: int, end: int) -> int:
        """tlb_finish_mmu() after a zap of pgoffs [first, end)."""
        self.metrics.inc("arena.user_flushes")
        return self.kernel.machine.flush.user_range(
            cpu, self.uaddr(first), self.uaddr(end), self.mm.cpus
        )

    def give_back(self, cpu: int, spans: list[FreedSpan]):
        """__free_page() of every page the spans collected."""
        pfns = [p for s in spans for p in s.pfns]
        if pfns:
            yield from self.pa.free_pages_batch(cpu, pfns)
        pages = len(pfns)
        for s in spans:
            for pfn, order in s.blocks:
                yield from self.pa.free_pages(cpu, pfn, order)
                pages += 1 << order
            s.pfns = []
            s.blocks = []
        if pages:
            self._hold(-pages)

    # -- bpf_arena_free_pages ----------------------------------------------------------------
    def free_pages(self, cpu: int, uaddr: int, n: int, sleepable: bool = True):
        """arena_free_pages(): from a sleepable program, or (spinlock era)
        a non-sleepable one, whose span is deferred to the worker."""
        t_start = self.env.now
        m = self.metrics
        uaddr = uaddr & LO32 & ~(PAGE - 1)
        full = (self.user_vm_start & ~LO32) + uaddr
        end = min(self.user_vm_end, full + (n << PAGE_SHIFT))
        if full >= end:
            return
        n = (end - full) >> PAGE_SHIFT
        pgoff = self.compute_pgoff(uaddr)
        m.inc("arena.frees")
        st = self.strategy
        used = n - self.rt.free_in(pgoff, n) - self._queued_in(pgoff, n)
        self._use(-used)
        m.inc("arena.freed_pages", used)
        if not sleepable:
            if not self.spin_era:
                raise SimulationError(
                    "bpf_arena_free_pages from a non-sleepable program needs "
                    "kernel.arena_locking: spinlock"
                )
            yield from self._defer(cpu, pgoff, n)
            return
        t0, extra = yield from self.lock(cpu)
        if not st.defer_range_free:
            self.rt.set(pgoff, n)
        per_page = not self.spin_era
        span = st.unmap(cpu, self, pgoff, n, per_page)
        work = extra + self._tree_ns() + self.unmap_ns(n, per_page)
        yield self.env.timeout(int(work))
        if self.spin_era:
            # the flush, the zap and the frees run after the unlock
            self.unlock(cpu, t0)
            yield from st.retire(cpu, self, [span], locked=False)
        else:
            yield from st.retire(cpu, self, [span], locked=True)
            self.unlock(cpu, t0)
        self._per_free()
        m.latency("arena_free", self.env.now - t_start)

    def _queued_in(self, pgoff: int, n: int) -> int:
        """Pages of [pgoff, pgoff + n) already freed by the program but not
        yet marked free (deferred spans, a strategy's pending ones)."""
        queued = pages_in(self.free_spans, pgoff, n)
        return queued + self.strategy.pending_in(self, pgoff, n)

    def _defer(self, cpu: int, pgoff: int, n: int):
        """The defer: label: kmalloc_nolock() a span, llist_add(),
        irq_work_queue() (a no-op while one is pending)."""
        yield self.env.timeout(int(self.slab_ns))
        self.free_spans.append((pgoff, n))
        self.metrics.inc("arena.deferred_frees")
        if not self._irq_queued:
            self._irq_queued = True
            proc = self.env.process(self._free_irq(cpu))
            self._workers.add(proc)
            proc.callbacks.append(lambda _ev, p=proc: self._workers.discard(p))

    def deferred_done(self):
        """An event for the end of the deferred frees under way, or None."""
        return self.env.all_of(list(self._workers)) if self._workers else None

    def _free_irq(self, cpu: int):
        """arena_free_irq() at the next interrupt, schedule_work(), then
        arena_free_worker() on a kworker of the same CPU."""
        yield self.env.timeout(int(self.irq_ns + self.wakeup_ns))
        self._irq_queued = False
        t0, extra = yield from self.lock(cpu)
        queued, self.free_spans = self.free_spans, []
        st = self.strategy
        spans = []
        work = extra
        for pgoff, n in queued:
            span = st.unmap(cpu, self, pgoff, n, False)
            span.zap_always = True
            if not st.defer_range_free:
                self.rt.set(pgoff, n)
            spans.append(span)
            work += self.unmap_ns(n, False)
        work += self._tree_ns()
        yield self.env.timeout(int(work))
        self.unlock(cpu, t0)
        self.metrics.inc("arena.free_worker_runs")
        yield from st.retire(cpu, self, spans, locked=False)
        self._per_free()
