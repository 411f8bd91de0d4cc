"""mm/shrinker.c (mm/vmscan.c before v6.7): shrinkers and shrink_slab().

Caches that hold memory the kernel can take back register a shrinker: a
``count_objects()`` saying how much is freeable and a ``scan_objects()``
freeing up to ``nr_to_scan`` of it. Under memory pressure kswapd (and
direct reclaim) call ``shrink_slab()`` at a reclaim ``priority`` (12,
DEF_PRIORITY, down to 0 as pressure grows), and ``do_shrink_slab()`` asks
each shrinker for a share of its objects:

- ``delta = (freeable >> priority) * 4 / seeks`` (``seeks`` DEFAULT_SEEKS,
  2), plus the work deferred from earlier calls (``nr_deferred >>
  priority``), at most twice what is freeable;
- scanned in batches of ``batch`` (SHRINK_BATCH, 128) while at least a
  batch, or everything freeable, is left; a scan returning SHRINK_STOP
  ends it;
- what was asked and not scanned is deferred to the next call.

The shrinkers here: vmalloc's ``vmap-node`` (7679ba6b36db, v6.9: every
per-node pool decayed whole) and those the strategies register (the RFC
caches of perm_alloc and __GFP_UNMAPPED). ``shrink_slab()`` is called by
page reclaim (:class:`Reclaim` below, once an allocation crosses the zone
watermarks of :mod:`simcore.kernel.watermarks`) and by the ``reclaim``
workload, which calls it at a stated rate.

Page reclaim (:class:`Reclaim`), mm/vmscan.c with the same steps:

- ``shrink_node()``: ``shrink_lruvec()`` scans the file LRU from its tail,
  ``lru_size >> priority`` pages (``get_scan_count()``), in batches of
  SWAP_CLUSTER_MAX (32) pages, and stops once ``nr_to_reclaim`` pages are
  reclaimed (direct reclaim at DEF_PRIORITY scans its whole share:
  ``proportional_reclaim``); then ``shrink_slab()`` at the same priority;
  progress resets the node's ``kswapd_failures``;
- kswapd (one SimPy process per node, on the node's first CPU, started on
  its first wake-up): ``wakeup_kswapd()`` wakes it unless the node is
  balanced (free above its high watermark) or hopeless
  (``kswapd_failures`` >= MAX_RECLAIM_RETRIES); ``balance_pgdat()`` runs
  rounds from DEF_PRIORITY down to 1, each ``kswapd_shrink_node()`` with
  ``nr_to_reclaim = max(high_wmark, SWAP_CLUSTER_MAX)``, raising the
  priority when a round scanned fewer pages than that or reclaimed none,
  until the node is balanced; a run that reclaimed nothing counts a
  failure; kswapd sleeps when the node is balanced or hopeless;
- direct reclaim, in the allocating task: ``try_to_free_pages()`` /
  ``do_try_to_free_pages()``: ``shrink_node()`` on every node of the
  zonelist from DEF_PRIORITY down to 0 until SWAP_CLUSTER_MAX pages came
  back; ``should_reclaim_retry()`` decides whether the allocator tries again
  (used by :mod:`simcore.kernel.page_alloc`'s slow path). Reclaiming
  processes are PF_MEMALLOC (``env.active_process`` is the task): what
  they allocate comes from the reserves, without reclaiming again.

What is reclaimable is what registers as an :class:`LruSource`: the page
cache a workload fills (``pressure``), its folios in LRU order. All of it
is taken as clean, unmapped and referenced once (the inactive file list):
no writeback, no active list, no rotation, no refault. Anonymous memory is
not reclaimable (no swap is modelled, as with ``get_scan_count()``'s
SCAN_FILE when there is no swap space). Not modelled either: memcg
(one root lruvec per node), kswapd for high orders (it balances at
order 0: reclaim for a high order needs compaction), reclaim throttling
(``reclaim_throttle()``), the OOM killer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from simcore.kernel.watermarks import zone_watermark_ok

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.kernel.page_alloc import PageAlloc

DEF_PRIORITY = 12
DEFAULT_SEEKS = 2
SHRINK_BATCH = 128
SHRINK_STOP = -1  # a scan_objects() that cannot make progress
# include/linux/swap.h: the reclaim batch, and direct reclaim's target
SWAP_CLUSTER_MAX = 32
# mm/internal.h: reclaim rounds without progress before the allocator gives
# up (should_reclaim_retry()) and kswapd failures before a node is hopeless
MAX_RECLAIM_RETRIES = 16
# shrink_folio_list() on one clean, unmapped file folio: its share of the
# batch's LRU isolation and putback, folio_trylock(),
# folio_check_references() (no mapping to walk) and __remove_mapping() under
# the mapping's i_pages lock, storing a workingset shadow entry. Estimate:
# ~2,000 cycles at 2.5 GHz, no published per-folio figure; freeing the
# folio is charged by the page allocator on top.
FOLIO_RECLAIM_NS = 800

# counters a run with reclaimable memory reports, zero when nothing happened
RECLAIM_COUNTERS = (
    "vmscan.kswapd_wakeups",
    "vmscan.pageoutrun",
    "vmscan.kswapd_failures",
    "vmscan.allocstall",
    "vmscan.pgscan_kswapd",
    "vmscan.pgsteal_kswapd",
    "vmscan.pgscan_direct",
    "vmscan.pgsteal_direct",
    "vmscan.shrink_slab_calls",
    "buddy.slowpath_allocs",
    "buddy.reclaim_retries",
    "buddy.reclaim_failures",
    "buddy.compact_skipped_failures",
)


class LruSource(Protocol):
    """A holder of reclaimable pages (the page cache a workload fills): its
    folios on a node, oldest first. ``isolate()`` takes folios off the
    tail of the node's LRU, at least ``nr_pages`` pages when it has them
    (a large folio may give more), and forgets them: reclaim frees them."""

    def lru_pages(self, node: int) -> int: ...

    def isolate(self, node: int, nr_pages: int) -> list[tuple[int, int]]: ...


@dataclass
class Shrinker:
    name: str
    count_objects: Callable[[], int]
    # scan_objects(cpu, nr_to_scan): a generator returning objects freed,
    # or SHRINK_STOP
    scan_objects: Callable[[int, int], Generator[Any, Any, int]]
    seeks: int = DEFAULT_SEEKS
    batch: int = SHRINK_BATCH
    nr_deferred: int = 0


class Shrinkers:
    """The registered shrinkers and shrink_slab()."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.list: list[Shrinker] = []
        # shrinker_rwsem / the SRCU walk: the list read, a node a shrinker
        # (estimate, as a tree node in kernel_costs.rb_node_visit_ns)
        self.visit_ns = kernel.profile.kernel_costs.rb_node_visit_ns.value

    def register(self, shrinker: Shrinker) -> None:
        """shrinker_register() (register_shrinker() before v6.7)."""
        self.list.append(shrinker)

    def shrink_slab(self, cpu: int, priority: int = DEF_PRIORITY):
        """shrink_slab(): do_shrink_slab() on every shrinker; returns
        objects freed."""
        freed = 0
        for s in self.list:
            yield self.env.timeout(int(self.visit_ns))
            freed += yield from self._do_shrink_slab(cpu, s, priority)
        self.metrics.inc("vmscan.shrink_slab_calls")
        return freed

    def _do_shrink_slab(self, cpu: int, s: Shrinker, priority: int):
        freeable = s.count_objects()
        if freeable <= 0:
            return 0
        nr, s.nr_deferred = s.nr_deferred, 0
        delta = (freeable >> priority) * 4 // s.seeks
        total_scan = min((nr >> priority) + delta, 2 * freeable)
        freed = scanned = 0
        while total_scan >= s.batch or total_scan >= freeable:
            nr_to_scan = min(s.batch, total_scan)
            ret = yield from s.scan_objects(cpu, nr_to_scan)
            if ret == SHRINK_STOP:
                break
            freed += ret
            total_scan -= nr_to_scan
            scanned += nr_to_scan
            self.metrics.inc("vmscan.slabs_scanned", nr_to_scan)
            if total_scan <= 0:
                break
        s.nr_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
        if freed:
            self.metrics.inc(f"vmscan.shrinker.{s.name}.freed", freed)
        return freed


class _Kswapd:
    """One node's kswapd: its CPU, and the event it sleeps on (None while
    it runs)."""

    __slots__ = ("node", "cpu", "wait")

    def __init__(self, node: int, cpu: int) -> None:
        self.node = node
        self.cpu = cpu
        self.wait = None


class Reclaim:
    """Page reclaim over one page allocator: the LRU sources, kswapd per
    node, direct reclaim (see the module doc)."""

    def __init__(self, kernel: Kernel, page_alloc: PageAlloc) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.pa = page_alloc
        self.zones = page_alloc.buddy.zones
        self.shrinkers = kernel.shrinkers
        self.lrus: list[LruSource] = []
        # NR_ISOLATED_FILE: pages taken off an LRU and not freed yet
        self.nr_isolated = 0
        self.kswapd_failures = [0] * len(self.zones)
        self.kswapds: dict[int, _Kswapd] = {}
        # the processes running reclaim (PF_MEMALLOC): kswapd, and tasks in
        # direct reclaim; their allocations neither reclaim nor wait
        self.memalloc: set = set()

    def in_reclaim(self) -> bool:
        """current->flags & PF_MEMALLOC, for the running process."""
        return self.env.active_process in self.memalloc

    def register_lru(self, source: LruSource) -> None:
        """A holder of reclaimable pages joins the LRU; from then on the
        run reports the reclaim counters, zero or not."""
        self.lrus.append(source)
        for name in RECLAIM_COUNTERS:
            self.metrics.inc(name, 0)

    def lru_pages(self, node: int) -> int:
        """zone_reclaimable_pages(): the file LRU of the node."""
        return sum(s.lru_pages(node) for s in self.lrus)

    def balanced(self, node: int) -> bool:
        """pgdat_balanced() at order 0: free above the high watermark."""
        zone = self.zones[node]
        return zone_watermark_ok(zone, 0, zone.wmark_high)

    # -- kswapd ------------------------------------------------------------------
    def wake_all_kswapds(self, order: int, nodes: list[int]) -> None:
        """wake_all_kswapds(): wakeup_kswapd() on every node of the zonelist."""
        for n in nodes:
            self.wakeup_kswapd(n, order)

    def wakeup_kswapd(self, node: int, order: int = 0) -> None:
        """wakeup_kswapd(): not for a hopeless or balanced node."""
        if self.kswapd_failures[node] >= MAX_RECLAIM_RETRIES or self.balanced(node):
            return
        k = self.kswapds.get(node)
        if k is None:
            # kthread_run(kswapd) at boot; started here on first need, so a
            # run that never reclaims has no kswapd process at all
            k = self.kswapds[node] = _Kswapd(node, self._node_cpu(node))
            self.memalloc.add(self.env.process(self._kswapd(k)))
        elif k.wait is not None and not k.wait.triggered:
            k.wait.succeed()
        else:
            return  # running already
        self.metrics.inc("vmscan.kswapd_wakeups")

    def _node_cpu(self, node: int) -> int:
        """The first CPU of the node (kswapd is bound to the node's CPUs)."""
        for cpu in range(self.kernel.nr_cpus):
            if self.pa.node_of(cpu) == node:
                return cpu
        return 0

    def _kswapd(self, k: _Kswapd):
        """kswapd(): balance_pgdat() until the node is balanced or hopeless
        (prepare_kswapd_sleep()), then sleep until woken."""
        while True:
            while not self.balanced(k.node) and (
                self.kswapd_failures[k.node] < MAX_RECLAIM_RETRIES
            ):
                yield from self.balance_pgdat(k.cpu, k.node)
            k.wait = self.env.event()
            yield k.wait
            k.wait = None

    def balance_pgdat(self, cpu: int, node: int):
        """balance_pgdat() at order 0; returns the pages reclaimed."""
        zone = self.zones[node]
        t0 = self.env.now
        self.metrics.inc("vmscan.pageoutrun")
        reclaimed = 0
        priority = DEF_PRIORITY
        while priority >= 1 and not self.balanced(node):
            # kswapd_shrink_node(): max(high_wmark_pages, SWAP_CLUSTER_MAX)
            nr_to_reclaim = max(zone.wmark_high, SWAP_CLUSTER_MAX)
            scanned, got = yield from self.shrink_node(
                cpu, node, priority, nr_to_reclaim, kswapd=True
            )
            reclaimed += got
            # no need to raise the priority while enough is being scanned
            # that the high watermark would be met at 100 % efficiency
            if scanned < nr_to_reclaim or not got:
                priority -= 1
        if not reclaimed:
            self.kswapd_failures[node] += 1
            self.metrics.inc("vmscan.kswapd_failures")
        self._spent(t0, "balance_pgdat")
        return reclaimed

    # -- direct reclaim ----------------------------------------------------------
    def try_to_free_pages(self, cpu: int, nodes: list[int]):
        """try_to_free_pages() / do_try_to_free_pages() in the allocating
        task: every node of the zonelist, priority DEF_PRIORITY down to 0,
        until SWAP_CLUSTER_MAX pages came back. Returns pages reclaimed."""
        t0 = self.env.now
        self.metrics.inc("vmscan.allocstall")
        task = self.env.active_process
        self.memalloc.add(task)  # __perform_reclaim(): memalloc_noreclaim_save()
        reclaimed = 0
        for priority in range(DEF_PRIORITY, -1, -1):
            for n in nodes:
                _, got = yield from self.shrink_node(
                    cpu, n, priority, SWAP_CLUSTER_MAX, kswapd=False
                )
                reclaimed += got
            if reclaimed >= SWAP_CLUSTER_MAX:
                break
        self.memalloc.discard(task)
        self._spent(t0, "direct_reclaim")
        return reclaimed

    def should_reclaim_retry(
        self, order: int, nodes: list[int], progress: bool, no_progress_loops: int
    ) -> tuple[bool, int]:
        """should_reclaim_retry(): (retry?, the new no_progress_loops). A
        retry makes sense while some node would pass its min watermark if
        all its reclaimable pages were freed (the decay of that estimate
        with rounds without progress left the kernel in 2017, before every
        modelled era)."""
        if progress:
            no_progress_loops = 0
        else:
            no_progress_loops += 1
        if no_progress_loops > MAX_RECLAIM_RETRIES:
            return False, no_progress_loops
        for n in nodes:
            zone = self.zones[n]
            available = self.lru_pages(n) + zone.nr_free_pages
            if zone_watermark_ok(zone, order, zone.wmark_min, available):
                return True, no_progress_loops
        return False, no_progress_loops

    # -- shrink_node -------------------------------------------------------------
    def shrink_node(
        self, cpu: int, node: int, priority: int, nr_to_reclaim: int, *, kswapd: bool
    ):
        """shrink_node(): the file LRU (shrink_lruvec()), then the
        shrinkers. Returns (pages scanned, pages reclaimed)."""
        scan = self.lru_pages(node) >> priority
        proportional = not kswapd and priority == DEF_PRIORITY
        scanned = reclaimed = 0
        while scan > 0:
            folios = self._isolate(node, min(scan, SWAP_CLUSTER_MAX))
            if not folios:
                break
            n = yield from self._shrink_folio_list(cpu, folios)
            scan -= n
            scanned += n
            reclaimed += n
            if reclaimed >= nr_to_reclaim and not proportional:
                break
        yield from self.shrinkers.shrink_slab(cpu, priority)
        who = "kswapd" if kswapd else "direct"
        if scanned:
            self.metrics.inc(f"vmscan.pgscan_{who}", scanned)
            self.metrics.inc(f"vmscan.pgsteal_{who}", reclaimed)
        if reclaimed:
            # "a successful direct reclaim run will revive a dormant kswapd"
            self.kswapd_failures[node] = 0
        return scanned, reclaimed

    def _isolate(self, node: int, nr_pages: int) -> list[tuple[int, int]]:
        """isolate_lru_folios(): folios from the LRU tail, ``nr_pages`` or
        more (a large folio goes whole)."""
        out: list[tuple[int, int]] = []
        want = nr_pages
        for src in self.lrus:
            if want <= 0:
                break
            got = src.isolate(node, want)
            out += got
            want -= sum(1 << o for _, o in got)
        self.nr_isolated += nr_pages - want
        return out

    def _shrink_folio_list(self, cpu: int, folios: list[tuple[int, int]]):
        """shrink_folio_list() of clean file folios: each dropped from its
        mapping, then all freed (free_unref_folios()). Returns pages."""
        yield self.env.timeout(len(folios) * FOLIO_RECLAIM_NS)
        pa = self.pa
        small = [pfn for pfn, o in folios if not o]
        ns = 0.0
        if small:
            ns = yield from pa.free_pages_batch_ns(cpu, small)
        for pfn, o in folios:
            if o:
                yield from pa.free_pages(cpu, pfn, o)
        if ns:
            yield self.env.timeout(int(ns))
        pages = sum(1 << o for _, o in folios)
        self.nr_isolated -= pages
        return pages

    def _spent(self, t0: int, op: str) -> None:
        dt = self.env.now - t0
        self.metrics.latency(op, dt)
        self.metrics.cpu_time("reclaim", dt)
