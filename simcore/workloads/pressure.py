"""``pressure``: user and page-cache memory filling RAM, then churning.

The generator holds two kinds of memory, as a busy host's processes and
files do:

- anonymous memory (``AnonPages``): not reclaimable, since no swap is
  modelled; it leaves only when the generator frees it (a process exits);
- page cache (``Cached``): clean file folios on the LRU of their node,
  which the generator never frees itself; page reclaim takes them, oldest
  first, through :class:`~simcore.kernel.vmscan.LruSource`.

At the start ``cpus`` fillers allocate ``target`` (a share of RAM or a
size) in 2 MiB chunks, a ``page_cache`` share of them page cache, each
chunk made of blocks of one order drawn from ``orders`` (a PMD-sized THP
or page-cache folio, mTHP and large folios, 4K pages). Past the free
memory the kernel's watermarks take over: kswapd and direct reclaim give
page cache back, and with ``target: 100%`` the fill ends with memory at
the watermarks. Then, each a Poisson process of its own, ``churn.reads``
times a second a read brings a new chunk into the page cache (reclaim
makes room: the page cache is never freed otherwise, so reads keep kswapd
working at the watermarks), and ``churn.respawns`` times a second a
process exits and another starts (an anonymous chunk freed, a new one
allocated).

Allocation follows the kernel's gfp masks: an anonymous THP or mTHP is
``GFP_TRANSHUGE_LIGHT`` (no direct reclaim and no kswapd wake-up: THP
``defrag=madvise``, the default), a large page-cache folio is ``readahead_gfp_mask()``
(``__GFP_NORETRY``), a 4K page is ``GFP_KERNEL``-like (the page a reader
or a fault waits for) and may reclaim and retry. A block that fails falls back to 4K pages for the rest of its chunk
(do_anonymous_page() after a THP miss; readahead's smaller folios). 4K
pages are allocated a batch at a time with ``alloc_pages_bulk()`` (one
fault per page in the kernel: the same pages, fewer events). When even 4K
pages fail (memory is anonymous and the OOM killer is not modelled) the
filler stops. Counters: ``workload.pressure.anon_pages`` and
``.file_pages`` (held now), ``.alloc_failures``, ``.fallbacks``,
``.reads``, ``.respawns``; the kernel's are ``vmscan.*`` and ``buddy.*``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from simcore.constants import PAGE, PAGES_PER_PMD, PMD_ORDER
from simcore.kernel.page_alloc import (
    BULK_CHUNK,
    GFP_NORETRY,
    GFP_TRANSHUGE_LIGHT,
)
from simcore.strict import Strict
from simcore.units import Rate, parse_size
from simcore.workloads.execution import exp_ns

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "anonymous and page-cache memory filling RAM, then churning"

Block = tuple[int, int]  # (pfn, order)


class PressureChurn(Strict):
    reads: Rate = Field(
        default=0.0, ge=0, description="2 MiB page-cache chunks read per second"
    )
    respawns: Rate = Field(
        default=0.0,
        ge=0,
        description="2 MiB anonymous chunks freed and allocated again per second",
    )


class Pressure(Strict):
    type: Literal["pressure"]
    target: str | int = Field(
        default="100%",
        description="memory the fill allocates: a share of RAM (95%) or a size",
    )
    # Estimates, no published census behind them: a file-heavy host keeps
    # most of its used memory as page cache; anonymous memory is mostly
    # THP (order 9) with some mTHP (order 4) and 4K pages
    page_cache: float = Field(
        default=0.7, ge=0, le=1, description="share of chunks in the page cache"
    )
    orders: dict[int, float] = Field(
        default_factory=lambda: {PMD_ORDER: 0.85, 4: 0.1, 0: 0.05},
        description="share of chunks made of blocks of each order (0..9)",
    )
    cpus: int = Field(default=1, ge=1, le=4096, description="fillers, spread")
    churn: PressureChurn = Field(default_factory=PressureChurn)

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v):
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                pct = float(v.strip()[:-1])
            except ValueError:
                raise ValueError(f"expected a share like 95%, got {v!r}") from None
            if not 0 < pct <= 100:
                raise ValueError(f"target {v!r} is not in (0%, 100%]")
            return f"{pct:g}%"
        n = parse_size(v)
        if n < PAGES_PER_PMD * PAGE:
            raise ValueError("target must be at least one 2 MiB chunk")
        return n

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: dict[int, float]) -> dict[int, float]:
        if not v or any(not 0 <= k <= PMD_ORDER for k in v):
            raise ValueError(f"orders must be block orders 0..{PMD_ORDER}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("order shares must be >= 0 with a positive sum")
        return v

    def target_pages(self, total_pages: int) -> int:
        if isinstance(self.target, str):
            return int(total_pages * float(self.target[:-1]) / 100)
        return self.target // PAGE

    def start(self, kernel: Kernel, index: int) -> None:
        _Run(self, kernel, index).start()


class _Run:
    """The generator's memory and its processes; the page cache's LRU
    (an :class:`~simcore.kernel.vmscan.LruSource`)."""

    def __init__(self, cfg: Pressure, kernel: Kernel, index: int) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.env = kernel.env
        self.pa = kernel.page_alloc
        self.metrics = kernel.metrics
        # a stream per process, so that draws do not depend on timing
        self.tag = f"workload.{index}.pressure"
        nodes = len(self.pa.buddy.zones)
        # per node, oldest folio first: the inactive file list
        self.lru: list[deque[Block]] = [deque() for _ in range(nodes)]
        self.lru_nr = [0] * nodes
        self.anon: list[list[Block]] = []  # chunks, freed whole
        self.anon_pages = 0
        self.busy = 0  # operations under way (tests wait for none)
        orders = sorted(cfg.orders)
        weights = [cfg.orders[o] for o in orders]
        total = sum(weights)
        self.orders = orders
        self.order_p = [w / total for w in weights]

    def start(self) -> None:
        kernel, cfg = self.kernel, self.cfg
        self.pa.reclaim.register_lru(self)
        self._account(0, 0)
        n = min(cfg.cpus, kernel.nr_cpus)
        cpus = [(i * kernel.nr_cpus) // n for i in range(n)]
        chunks = -(-cfg.target_pages(self.pa.buddy.total_pages) // PAGES_PER_PMD)
        fillers = [
            self.env.process(
                self._fill(cpu, chunks // n + (i < chunks % n), f"{self.tag}.fill{i}")
            )
            for i, cpu in enumerate(cpus)
        ]
        filled = self.env.all_of(fillers)
        if cfg.churn.reads > 0:
            self.env.process(self._churn(cpus, filled, cfg.churn.reads, True))
        if cfg.churn.respawns > 0:
            self.env.process(self._churn(cpus, filled, cfg.churn.respawns, False))

    # -- LruSource ---------------------------------------------------------------
    def lru_pages(self, node: int) -> int:
        return self.lru_nr[node]

    def isolate(self, node: int, nr_pages: int) -> list[Block]:
        lru = self.lru[node]
        out: list[Block] = []
        taken = 0
        while taken < nr_pages and lru:
            blk = lru.popleft()
            out.append(blk)
            taken += 1 << blk[1]
        self.lru_nr[node] -= taken
        self._account(0, -taken)
        return out

    def held_pages(self) -> list[int]:
        """Every page the generator holds (for checks)."""
        blocks = [b for lru in self.lru for b in lru]
        blocks += [b for chunk in self.anon for b in chunk]
        return [p for pfn, o in blocks for p in range(pfn, pfn + (1 << o))]

    # -- processes ---------------------------------------------------------------
    def _fill(self, cpu: int, chunks: int, stream: str):
        rng = self.kernel.rng(stream)
        for _ in range(chunks):
            file = bool(rng.random() < self.cfg.page_cache)
            ok = yield from self._new_chunk(cpu, file, rng)
            if not ok:
                return

    def _churn(self, cpus: list[int], filled, rate: float, file: bool):
        """After the fill: reads (a new page-cache chunk each) or respawns
        (an anonymous chunk freed, another allocated), Poisson at ``rate``,
        one at a time (a slow allocation delays the next)."""
        yield filled
        gap = 1e9 / rate
        rng = self.kernel.rng(f"{self.tag}.{'reads' if file else 'respawns'}")
        while True:
            yield self.env.timeout(exp_ns(rng, gap))
            cpu = cpus[int(rng.integers(len(cpus)))]
            if file:
                self.metrics.inc("workload.pressure.reads")
                yield from self._new_chunk(cpu, True, rng)
            elif self.anon:
                self.metrics.inc("workload.pressure.respawns")
                i = int(rng.integers(len(self.anon)))
                chunk = self.anon[i]
                self.anon[i] = self.anon[-1]
                self.anon.pop()
                yield from self._free_chunk(cpu, chunk)
                yield from self._new_chunk(cpu, False, rng)

    # -- chunks ----------------------------------------------------------------
    def _new_chunk(self, cpu: int, file: bool, rng):
        """Allocate a 2 MiB chunk; False when memory ran out."""
        self.busy += 1
        order = self.orders[int(rng.choice(len(self.orders), p=self.order_p))]
        gfp = GFP_NORETRY if file else GFP_TRANSHUGE_LIGHT
        blocks: list[Block] = []
        want = PAGES_PER_PMD
        ok = True
        while want > 0:
            if order:
                pfn = yield from self.pa.alloc_pages(cpu, order, gfp=gfp)
                if pfn is None:
                    self.metrics.inc("workload.pressure.fallbacks")
                    order = 0
                    continue
                blocks.append((pfn, order))
                want -= 1 << order
                continue
            pfns = yield from self.pa.alloc_pages_bulk(cpu, min(want, BULK_CHUNK))
            if not pfns:
                self.metrics.inc("workload.pressure.alloc_failures")
                ok = False
                break
            blocks += [(p, 0) for p in pfns]
            want -= len(pfns)
        self._keep(blocks, file)
        self.busy -= 1
        return ok

    def _keep(self, blocks: list[Block], file: bool) -> None:
        if not blocks:
            return
        pages = sum(1 << o for _, o in blocks)
        if file:
            zone_of = self.pa.buddy.zone_of
            for blk in blocks:
                node = zone_of(blk[0]).node
                self.lru[node].append(blk)
                self.lru_nr[node] += 1 << blk[1]
            self._account(0, pages)
        else:
            self.anon.append(blocks)
            self.anon_pages += pages
            self._account(pages, 0)

    def _free_chunk(self, cpu: int, chunk: list[Block]):
        self.busy += 1
        pages = sum(1 << o for _, o in chunk)
        self.anon_pages -= pages
        self._account(-pages, 0)
        small = [pfn for pfn, o in chunk if not o]
        for pfn, o in chunk:
            if o:
                yield from self.pa.free_pages(cpu, pfn, o)
        if small:
            yield from self.pa.free_pages_batch(cpu, small)
        self.busy -= 1

    def _account(self, anon: int, file: int) -> None:
        """The pages held now (AnonPages, Cached), as changes: several
        pressure workloads add up."""
        self.metrics.inc("workload.pressure.anon_pages", anon)
        self.metrics.inc("workload.pressure.file_pages", file)
