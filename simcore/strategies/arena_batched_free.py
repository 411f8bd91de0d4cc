"""``arena_batched_free``: arena frees queued and flushed once per batch.

The kernel arena flushes the kernel range on every CPU for every free (per
page in the mutex era). This design does what the vmalloc lazy purge does
for vfree(): a freed span leaves both views at once (kernel PTEs cleared,
user PTEs zapped) but its flushes wait; when ``batch`` spans are queued, or
``delay`` after the first, one ``flush_tlb_kernel_range()`` covers them
all (past 33 pages it is a full flush, still one IPI round) and one user
flush covers the zapped user pages. Until then the pages stay held (stale
TLB entries may still reach them, so they cannot go back to the buddy
allocator) and their offsets stay allocated in the range tree (so no new
page is mapped where a stale entry points). The cost is that memory
(``mem.arena.pending_free_bytes``), and a user touch of a pending offset,
which gets a fresh page from the fault path as after any free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simcore.errors import SimulationError
from simcore.kernel.bpf.arena import keys_in, pages_in
from simcore.strategies.arena_base import ArenaStrategy
from simcore.strategies.params import StrategyParams, param
from simcore.units import Duration, format_duration

if TYPE_CHECKING:
    from simcore.kernel.bpf.arena import BpfArena, FreedSpan

# Spans per flush. Estimate: a lazy-purge-like design, sized so that a
# churn of single pages keeps far under the memory vmalloc lets pile up
# (lazy_max_pages, 32 MiB per fls(CPUs)) while cutting flushes 32-fold.
FREE_BATCH = 32
# Longest a span waits when frees are rare. Estimate: bounds the memory
# held to about a millisecond of frees; any value well above the interval
# between frees gives the full batch factor.
FREE_BATCH_DELAY_NS = 1_000_000


class BatchParams(StrategyParams):
    batch: int = param(
        FREE_BATCH,
        help="freed spans queued before one flush covers them all",
        source="estimate (simcore/strategies/arena_batched_free.py): 32-fold "
        "fewer flushes, while a churn of single pages holds far less memory "
        "than vmalloc's lazy_max_pages",
        ge=1,
        le=1 << 20,
    )
    delay: Duration = param(
        format_duration(FREE_BATCH_DELAY_NS),
        help="longest a queued span waits when frees are rare",
        source="estimate (simcore/strategies/arena_batched_free.py): bounds "
        "the memory held to about a millisecond of frees",
        gt=0,
    )


@dataclass
class _Queue:
    spans: list[FreedSpan] = field(default_factory=list)
    gen: int = 0  # bumped at each flush: a sleeping timer for it stands down
    timer: object | None = None


class ArenaBatchedFree(ArenaStrategy):
    name = "arena_batched_free"
    first_release = None
    release_source = (
        "no series proposed batching arena frees: a what-if on kernel/bpf/arena.c"
    )
    summary = "kernel arena with frees queued and flushed once per 32 spans"
    models = "batched arena frees (what-if on kernel/bpf/arena.c)"
    defer_range_free = True
    Params = BatchParams
    params: BatchParams

    @property
    def batch(self) -> int:
        return self.params.batch

    @property
    def delay(self) -> int:
        return self.params.delay

    def init_arena(self, arena: BpfArena) -> _Queue:
        return _Queue()

    def retire(self, cpu: int, arena: BpfArena, spans: list[FreedSpan], locked: bool):
        q: _Queue = arena.priv
        for s in spans:
            yield from arena.zap(cpu, s, locked, flush=False)
            q.spans.append(s)
            self._pending(arena, s.pages)
        if len(q.spans) >= self.batch:
            yield from self._flush(cpu, arena, locked)
        elif q.timer is None:
            q.timer = arena.env.process(self._timer(cpu, arena, q.gen))

    def _pending(self, arena: BpfArena, pages: int) -> None:
        arena.metrics.counters["mem.arena.pending_free_bytes"] += pages << 12

    def _timer(self, cpu: int, arena: BpfArena, gen: int):
        yield arena.env.timeout(self.delay)
        q: _Queue = arena.priv
        if q.gen == gen and q.spans and not arena.dead:
            yield from self._flush(cpu, arena, False)

    def _flush(self, cpu: int, arena: BpfArena, locked: bool):
        """One kernel flush and one user flush for every queued span, then
        the offsets and the pages are released."""
        q: _Queue = arena.priv
        spans, q.spans = q.spans, []
        q.gen += 1
        q.timer = None
        m = arena.metrics
        ranges = [r for s in spans for r in s.kranges]
        ns = 0
        if ranges:
            lo = min(a for a, _ in ranges)
            hi = max(b for _, b in ranges)
            ns += arena.flush_kernel(cpu, lo, hi)
            m.inc("arena.batched_flushes")
        users = [p for s in spans for p in s.user_cleared]
        if users:
            ns += arena.flush_user(cpu, min(users), max(users) + 1)
        yield arena.env.timeout(ns)
        if locked:
            work = 0
        else:
            t0, work = yield from arena.lock(cpu)
        for s in spans:
            # offsets a user fault re-populated meanwhile stay allocated
            start = s.pgoff
            for p in keys_in(arena.pfn, s.pgoff, s.pgoff + s.n):
                if p > start:
                    arena.rt.set(start, p - start)
                start = p + 1
            if start < s.pgoff + s.n:
                arena.rt.set(start, s.pgoff + s.n - start)
        yield arena.env.timeout(int(work + arena._tree_ns()))
        if not locked:
            arena.unlock(cpu, t0)
        self._pending(arena, -sum(s.pages for s in spans))
        yield from arena.give_back(cpu, spans)

    def pending_in(self, arena: BpfArena, pgoff: int, n: int) -> int:
        return pages_in(((s.pgoff, s.n) for s in arena.priv.spans), pgoff, n)

    def drain(self, cpu: int, arena: BpfArena):
        if arena.priv.spans:
            yield from self._flush(cpu, arena, False)

    def check(self, arena: BpfArena) -> set[int]:
        held: set[int] = set()
        for s in arena.priv.spans:
            for pfn in s.pfns:
                if arena.pa.buddy.allocated.get(pfn) != 0:
                    raise SimulationError(f"pending pfn {pfn:#x} not allocated")
                held.add(pfn)
        return held
