"""mm/page_alloc.c: the buddy allocator, per NUMA node, with per-CPU lists.

Two layers. :class:`BuddyAllocator` (:mod:`simcore.kernel.buddy`; its
starting states in :mod:`simcore.kernel.buddy_seed`, ``struct zone`` in
:mod:`simcore.kernel.mmzone`) is the data structure alone (no time, no
SimPy), so property tests can drive it directly; :class:`PageAlloc` wraps
it in SimPy generators that take ``zone->lock`` and charge the profile's
``kernel_costs``.

Kernel functions modelled here, with the same steps (``__rmqueue_smallest()``,
``expand()`` and ``__free_one_page()`` are in :mod:`simcore.kernel.buddy`):

- per-CPU page lists for order 0 (``rmqueue_pcplist()`` /
  ``free_unref_page()``): lockless for the owning CPU; an empty list is
  refilled with ``pcp->batch`` pages by ``rmqueue_bulk()`` and a list that
  reaches ``pcp->high`` gives ``batch`` of its oldest pages back through
  ``free_pcppages_bulk()``, both under ``zone->lock``;
- ``alloc_pages_bulk()``: order-0 pages from this CPU's list of the local
  node only; when that node has none, one page from the ordinary path
  (which may fall back to other nodes). vmalloc's ``vm_area_alloc_pages()``
  calls it for at most :data:`BULK_CHUNK` pages at a time;
- ``split_page()``: an order-k block becomes 2^k order-0 pages that are
  freed one by one later; ``drain_all_pages()``.

- the per-CPU lists of orders 1..3 and THP (44042b449872, v5.14;
  ``kernel.pcp_high_order``): an order with a list of its own is taken from
  it and freed to it, refilled with ``max(pcp->batch >> order, 2)`` blocks,
  and every list of the CPU counts toward ``pcp->high``.

- the zone watermarks (:mod:`simcore.kernel.watermarks`):
  ``get_page_from_freelist()`` skips a node whose free pages would not stay
  above its low watermark; when that leaves no page,
  ``__alloc_pages_slowpath()``: ``wake_all_kswapds()`` (unless the mask
  clears ``__GFP_KSWAPD_RECLAIM``: ``GFP_NOKSWAPD``, as
  ``GFP_TRANSHUGE_LIGHT`` does), a second pass down to the min watermark,
  then (a costly ``GFP_NORETRY`` order fails here when compaction would be
  skipped on every node) direct reclaim (``try_to_free_pages()`` of
  :mod:`simcore.kernel.vmscan`) and, when it made progress, another pass,
  ``drain_all_pages()`` and a last pass in each round, and
  ``should_reclaim_retry()`` (MAX_RECLAIM_RETRIES rounds without
  progress; each retry wakes kswapd and passes again before reclaiming)
  before failing; costly orders (> PAGE_ALLOC_COSTLY_ORDER) and
  ``GFP_NORETRY`` give up after one reclaim, and ``GFP_NORECLAIM`` (no
  ``__GFP_DIRECT_RECLAIM``) after the second pass; a process that is
  reclaiming (PF_MEMALLOC: kswapd, a direct reclaimer) takes from the
  reserve below the min watermark and never reclaims. ``alloc_pages_bulk()``
  takes pages only while the local node stays above its low watermark plus
  the request, else one page from the ordinary path.

Not modelled: migratetypes and pageblock stealing, compaction (above the
watermarks a high-order allocation fails at once when no free block of the
order exists on any allowed node, as it did before watermarks were
modelled), the OOM killer (an allocation that reclaim cannot satisfy fails
instead), GFP flags beyond the three above (every caller allocates as
GFP_KERNEL; atomic allocations that may dip below the min watermark are
not distinguished), the DMA/DMA32/Normal
split (one zone per node; a capture's DMA, DMA32 and Normal rows are summed,
its Movable rows ignored), memory holes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE_SHIFT, PAGE_SIZE
from simcore.errors import CaptureError, SimulationError
from simcore.kernel.boot_pages import BootPages
from simcore.kernel.buddy import PAGE_ALLOC_COSTLY_ORDER, BuddyAllocator
from simcore.kernel.buddy_seed import FRAG_PATTERNS, FRAG_SPLIT_P, FRAG_USED_P
from simcore.kernel.buddyinfo import MAX_PAGE_ORDER, NR_ORDERS, load_buddyinfo
from simcore.kernel.mmzone import (
    MAX_ORDER_NR_PAGES,
    PAGEBLOCK_ORDER,
    PCP_HIGH_BATCHES,
    Zone,
    zone_batchsize,
)
from simcore.kernel.vmscan import Reclaim
from simcore.kernel.watermarks import (
    min_free_kbytes,
    recommended_min_free_kbytes,
    setup_per_zone_wmarks,
)

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.profile import HwProfile

# this module's names and the buddy allocator's, which callers import from here
__all__ = [
    "BULK_CHUNK",
    "GFP_KERNEL",
    "GFP_NOKSWAPD",
    "GFP_NORECLAIM",
    "GFP_NORETRY",
    "GFP_TRANSHUGE_LIGHT",
    "FRAG_PATTERNS",
    "FRAG_SPLIT_P",
    "FRAG_USED_P",
    "MAX_ORDER_NR_PAGES",
    "MAX_PAGE_ORDER",
    "NR_ORDERS",
    "PAGEBLOCK_ORDER",
    "PCP_HIGH_BATCHES",
    "ZONE_LOCKED_SHARE",
    "BuddyAllocator",
    "PageAlloc",
    "Zone",
    "node_pages_from_profile",
    "zone_batchsize",
]

# mm/vmalloc.c vm_area_alloc_pages() asks alloc_pages_bulk for at most 100
# pages per call (hard-coded, to bound the time spent with preemption off).
BULK_CHUNK = 100
# gfp_t bits the slow path reads (include/linux/gfp_types.h); 0 is GFP_KERNEL.
# GFP_NORETRY is __GFP_NORETRY: one round of direct reclaim, no retry loop;
# GFP_NORECLAIM is a mask without __GFP_DIRECT_RECLAIM (GFP_NOWAIT):
# kswapd is woken, the task does not reclaim; GFP_NOKSWAPD is a mask
# without __GFP_KSWAPD_RECLAIM (no ALLOC_KSWAPD: kswapd is not woken).
# GFP_TRANSHUGE_LIGHT clears both (__GFP_RECLAIM): a THP fault under the
# default defrag setting neither reclaims nor wakes kswapd.
GFP_KERNEL = 0
GFP_NORETRY = 1
GFP_NORECLAIM = 2
GFP_NOKSWAPD = 4
GFP_TRANSHUGE_LIGHT = GFP_NORECLAIM | GFP_NOKSWAPD
# the watermark a pass of get_page_from_freelist() keeps (ALLOC_WMARK_*)
LOW, MIN, NO_WATERMARKS = "low", "min", "none"
# Share of the bulk path's per-page cost spent moving pages between the buddy
# lists under zone->lock (rmqueue_bulk / free_pcppages_bulk), the rest being
# prep_new_page() and the per-CPU list work. Estimate: no published split.
ZONE_LOCKED_SHARE = 0.5


def node_pages_from_profile(profile: HwProfile) -> list[int]:
    """Pages per NUMA node: ``memory.dram_bytes`` split evenly over the
    nodes, each rounded down to whole order-10 blocks (4 MiB)."""
    t = profile.topology
    nodes = max(1, t.sockets.value * t.numa_nodes_per_socket.value)
    per_node = profile.memory.dram_bytes.value // nodes // PAGE_SIZE
    per_node -= per_node % MAX_ORDER_NR_PAGES
    if per_node <= 0:
        raise SimulationError(
            f"memory.dram_bytes = {profile.memory.dram_bytes.value} leaves no "
            f"4 MiB block per NUMA node ({nodes} nodes)"
        )
    return [per_node] * nodes


def kernel_zones(arch: str, nodes: int, lowmem_pages: int) -> int:
    """The populated zones up to ZONE_NORMAL that the kernel counts where
    the model has one zone per node: ZONE_NORMAL on every node, and on the
    first node ZONE_DMA (x86: the low 16 MiB) and ZONE_DMA32 (to 4 GiB),
    the latter with ZONE_NORMAL only when the machine has 4 GiB or more (an
    estimate: the PCI hole below 4 GiB pushes the rest of the first 4 GiB
    above it). arm64 (an estimate): ZONE_DMA spans the low 4 GiB on servers
    whose firmware allows 32-bit DMA, ZONE_DMA32 is then empty, so the
    first node has two."""
    if arch == "arm64":
        return nodes + 1
    return nodes + (2 if lowmem_pages << PAGE_SHIFT >= 4 << 30 else 1)


class PageAlloc:
    """The page allocator on the simulated machine: SimPy generators that
    take ``zone->lock`` and charge ``kernel_costs`` (see the module doc).

    Costs (estimates built on the profile's ``page_alloc_ns``):

    - a single allocation: ``page_alloc_ns`` (the pcp fast path);
    - a free to the per-CPU lists (order 0, and the pcp orders of the eras
      that have them): ``page_free_factor * page_alloc_ns`` (the ratio of
      the two paths in a published microbenchmark, in the profile); a
      larger block freed to the buddy allocator costs ``page_alloc_ns``,
      plus its locked merge steps;
    - bulk allocation: ``page_alloc_ns`` per call plus
      ``bulk_page_factor * page_alloc_ns`` per page (both in the profile);
    - under ``zone->lock``: ``ZONE_LOCKED_SHARE`` of the bulk per-page cost
      for every block moved between lists and every merge or split step;
    - ``zero=True`` (``__GFP_ZERO``): ``page_zero_ns`` per page.
    """

    def __init__(self, kernel: Kernel, buddy: BuddyAllocator | None = None) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        m = kernel.machine
        c = kernel.profile.kernel_costs
        self.page_ns = c.page_alloc_ns.value
        self.bulk_page_ns = self.page_ns * c.bulk_page_factor.value
        # free_unref_page(): the per-CPU list push, cheaper than the
        # allocation (no zonelist walk, no watermark test, no page prep)
        self.free_ns = self.page_ns * c.page_free_factor.value
        self.locked_ns = self.bulk_page_ns * ZONE_LOCKED_SHARE
        self.zero_ns = c.page_zero_ns.value
        self.store_ns = c.pte_write_ns.value
        self.buddy = buddy if buddy is not None else self._build(kernel)
        self.buddy.pcp_orders = bool(kernel.knobs.pcp_high_order)
        # pages of a captured host's state at time zero: from the memory a
        # /proc/buddyinfo capture leaves in use, else from the free lists
        self.boot = BootPages(
            self.buddy, captured_free=buddy is None and bool(kernel.knobs.buddyinfo)
        )
        self.zone_locks = [m.spinlock("zone_lock") for _ in self.buddy.zones]
        # init_per_zone_wmark_min(), a postcore initcall
        zones = self.buddy.zones
        lowmem = sum(z.nr_pages for z in zones)
        kbytes = min_free_kbytes(lowmem, kernel.knobs.min_free_kbytes_max)
        if kernel.knobs.thp != "never":
            # hugepage_init() -> start_stop_khugepaged(), a late initcall:
            # set_recommended_min_free_kbytes() raises it, never lowers it
            nr_zones = kernel_zones(kernel.profile.arch, len(zones), lowmem)
            kbytes = max(kbytes, recommended_min_free_kbytes(nr_zones, lowmem))
        self.min_free_kbytes = setup_per_zone_wmarks(zones, kbytes=kbytes)
        self._reclaim: Reclaim | None = None
        t = kernel.profile.topology
        self._cores_per_node = max(
            1, t.cores_per_socket.value // max(1, t.numa_nodes_per_socket.value)
        )
        self._nodes_per_socket = max(1, t.numa_nodes_per_socket.value)
        self._publish()

    @staticmethod
    def _build(kernel: Kernel) -> BuddyAllocator:
        k = kernel.knobs
        pages = node_pages_from_profile(kernel.profile)
        path = k.buddyinfo
        if path:
            p = kernel.ctx.capture(path)
            info = load_buddyinfo(p)
            if len(info.nodes()) != len(pages) or info.nodes() != list(
                range(len(pages))
            ):
                raise CaptureError(
                    f"the capture lists nodes {info.nodes()}, the machine has "
                    f"{len(pages)} NUMA node(s)",
                    file=str(p),
                    expected=f"nodes 0..{len(pages) - 1}",
                )
            counts = [info.node_counts(n) for n in range(len(pages))]
            return BuddyAllocator(pages, buddyinfo=counts, buddyinfo_file=str(p))
        return BuddyAllocator(
            pages,
            fragmentation=float(k.fragmentation),
            rng=kernel.rng("kernel.page_alloc"),
        )

    def node_of(self, cpu: int) -> int:
        """numa_node_id(): the node of the CPU's core."""
        place = self.kernel.machine.topo.places[cpu]
        core_in_socket = place.core % self.kernel.machine.topo.cores_per_socket
        node = place.socket * self._nodes_per_socket + min(
            core_in_socket // self._cores_per_node, self._nodes_per_socket - 1
        )
        return min(node, len(self.buddy.zones) - 1)

    @property
    def reclaim(self) -> Reclaim:
        """Page reclaim over this allocator, set up on first need."""
        if self._reclaim is None:
            self._reclaim = Reclaim(self.kernel, self)
        return self._reclaim

    def _publish(self) -> None:
        c = self.metrics.counters
        c["buddy.free_pages"] = self.buddy.nr_free_pages
        c["buddy.pcp_pages"] = self.buddy.nr_pcp_pages

    def _locked(self, cpu: int, node: int, step, *args):
        """Run one buddy-list step under zone->lock; returns its result."""
        lock = self.zone_locks[node]
        extra = yield from lock.take(cpu)
        result, work = step(*args)
        yield self.env.timeout(int(work * self.locked_ns + extra))
        lock.release(cpu)
        return result

    # steps returning (result, list work units)
    def _refill(self, node: int, cpu: int):
        moved = self.buddy.pcp_refill(node, cpu)
        return moved, max(1, moved)

    def _refill_order(self, node: int, cpu: int, order: int):
        moved = self.buddy.pcp_refill_order(node, cpu, order)
        return moved, max(1, moved)

    def _rmqueue(self, node: int, order: int):
        got = self.buddy.rmqueue(node, order)
        if got is None:
            return None, 1
        return got[0], 1 + got[1] - order

    def _drain(self, node: int, cpu: int, count: int | None = None):
        return None, max(1, self.buddy.pcp_free_bulk(node, cpu, count))

    def _free_one(self, pfn: int, order: int):
        return None, 1 + self.buddy.free_one(pfn, order)

    # -- generators ----------------------------------------------------------------
    def alloc_pages(
        self,
        cpu: int,
        order: int = 0,
        *,
        node: int | None = None,
        zero: bool = False,
        thisnode: bool = False,
        gfp: int = GFP_KERNEL,
    ):
        """alloc_pages_node(): returns a pfn, or None (high orders can fail;
        any order once reclaim cannot keep a node above its min watermark)."""
        b = self.buddy
        b.check_order(order)
        pref = self.node_of(cpu) if node is None else node
        nodes = b.fallback_nodes(pref, thisnode)
        pfn, low = yield from self._get_page_from_freelist(cpu, order, nodes, LOW)
        if pfn is None and low:
            pfn = yield from self._slowpath(cpu, order, nodes, gfp)
        ns = self.page_ns + (
            self.zero_ns * (1 << order) if zero and pfn is not None else 0
        )
        yield self.env.timeout(int(ns))
        if pfn is None:
            self.metrics.inc(f"buddy.order{order}_failures")
        self._publish()
        return pfn

    def _get_page_from_freelist(self, cpu: int, order: int, nodes: list[int], wmark):
        """get_page_from_freelist(): the first node of the zonelist that
        stays above the watermark (LOW, MIN, or NO_WATERMARKS) and has a
        block. Returns (pfn or None, whether a node was passed over for its
        watermark)."""
        b = self.buddy
        low = False
        pfn = None
        for n in nodes:
            zone = b.zones[n]
            # __zone_watermark_ok(), inline: this is every allocation's path
            if wmark is LOW:
                mark = zone.wmark_low
            elif wmark is MIN:
                mark = zone.wmark_min
            else:
                mark = -(1 << order)  # ALLOC_NO_WATERMARKS
            if zone.nr_free_pages - (1 << order) < mark:
                low = True
                continue
            # rmqueue_pcplist() holds the list (pcp->lock, preemption off)
            # across its refill; here another task on the CPU may empty the
            # refilled list while zone->lock is held, so refill again
            if order == 0:
                pfn = b.pcp_pop(n, cpu)
                while pfn is None:
                    moved = yield from self._locked(cpu, n, self._refill, n, cpu)
                    if not moved:
                        break
                    pfn = b.pcp_pop(n, cpu)
            elif b.pcp_allowed_order(order):
                # v5.14+: orders 1..3 and THP from this CPU's list of the
                # order, refilled in a batch under zone->lock when empty
                pfn = b.pcp_pop_order(n, cpu, order)
                while pfn is None:
                    moved = yield from self._locked(
                        cpu, n, self._refill_order, n, cpu, order
                    )
                    if not moved:
                        break
                    pfn = b.pcp_pop_order(n, cpu, order)
            else:
                pfn = yield from self._locked(cpu, n, self._rmqueue, n, order)
                if pfn is not None:
                    b.prep_new_page(pfn, order)
            if pfn is not None:
                break
        return pfn, low

    def _slowpath(self, cpu: int, order: int, nodes: list[int], gfp: int):
        """__alloc_pages_slowpath(), entered when the fast path passed a
        node over for its low watermark and found nothing: a pfn or None."""
        reclaim = self.reclaim
        m = self.metrics
        m.inc("buddy.slowpath_allocs")
        kswapd = not gfp & GFP_NOKSWAPD  # ALLOC_KSWAPD
        if kswapd:
            reclaim.wake_all_kswapds(order, nodes)
        pfn, _ = yield from self._get_page_from_freelist(cpu, order, nodes, MIN)
        if pfn is not None:
            return pfn
        if reclaim.in_reclaim():
            # PF_MEMALLOC (kswapd, a direct reclaimer): the reserves below
            # the min watermark (ALLOC_NO_WATERMARKS) and no reclaim from
            # within reclaim ("avoid recursion of direct reclaim")
            pfn, _ = yield from self._get_page_from_freelist(
                cpu, order, nodes, NO_WATERMARKS
            )
            return pfn
        if gfp & GFP_NORECLAIM:
            return None
        costly = order > PAGE_ALLOC_COSTLY_ORDER
        if costly and gfp & GFP_NORETRY and self._compaction_skipped(order, nodes):
            # __alloc_pages_direct_compact() comes before reclaim for a
            # costly order; compaction_suitable() skips every zone short of
            # its low watermark plus compact_gap(), and a costly
            # __GFP_NORETRY request then fails without reclaim ("goto
            # nopage": reclaim is unlikely to free whole pageblocks)
            m.inc("buddy.compact_skipped_failures")
            return None
        no_progress = 0
        while True:
            # __alloc_pages_direct_reclaim(), once a round: after reclaim
            # that made progress, a pass; pages may sit on per-CPU lists, so
            # drain them and pass again (its own "drained", once a call)
            got = yield from reclaim.try_to_free_pages(cpu, nodes)
            pfn = None
            if got:
                pfn, _ = yield from self._get_page_from_freelist(cpu, order, nodes, MIN)
                if pfn is None:
                    yield from self._drain_all(cpu)
                    pfn, _ = yield from self._get_page_from_freelist(
                        cpu, order, nodes, MIN
                    )
            if pfn is not None:
                return pfn
            if costly or gfp & GFP_NORETRY:
                break
            again, no_progress = reclaim.should_reclaim_retry(
                order, nodes, got > 0, no_progress
            )
            if not again:
                break
            m.inc("buddy.reclaim_retries")
            # retry: "ensure kswapd doesn't accidentally go to sleep as long
            # as we loop", then a pass before reclaiming again: kswapd and
            # other tasks may have freed pages meanwhile
            if kswapd:
                reclaim.wake_all_kswapds(order, nodes)
            pfn, _ = yield from self._get_page_from_freelist(cpu, order, nodes, MIN)
            if pfn is not None:
                return pfn
        m.inc("buddy.reclaim_failures")
        return None

    def _compaction_skipped(self, order: int, nodes: list[int]) -> bool:
        """compaction_suitable() of every node's zone says COMPACT_SKIPPED:
        for a costly order, order-0 free pages short of the low watermark
        plus compact_gap() (2 << order). Compaction itself is not modelled;
        where it would run (a node above that mark without a free block),
        the request goes on to reclaim as before."""
        zones = self.buddy.zones
        gap = 2 << order
        return all(zones[n].nr_free_pages < zones[n].wmark_low + gap for n in nodes)

    def _drain_all(self, cpu: int):
        """drain_all_pages(): every CPU's lists back to the buddy, each list
        under its zone's lock (charged to the caller, which waits for it)."""
        b = self.buddy
        for zone in b.zones:
            for owner in sorted(set(zone.pcp) | set(zone.pcp_hi)):
                held = len(zone.pcp.get(owner, ())) + zone.pcp_hi_pages.get(owner, 0)
                if held:
                    yield from self._locked(
                        cpu, zone.node, self._drain, zone.node, owner, held
                    )

    def alloc_pages_bulk(
        self, cpu: int, nr_pages: int, *, node: int | None = None, zero: bool = False
    ):
        """alloc_pages_bulk(): up to ``nr_pages`` order-0 pages of the local
        node (vmalloc asks for at most BULK_CHUNK at a time); one page from
        the ordinary path when the local node has none."""
        out, ns = yield from self.alloc_pages_bulk_ns(
            cpu, nr_pages, node=node, zero=zero
        )
        yield self.env.timeout(int(ns))
        return out

    def alloc_pages_bulk_ns(
        self, cpu: int, nr_pages: int, *, node: int | None = None, zero: bool = False
    ):
        """alloc_pages_bulk() returning ``(pages, ns)``: the lock-free part
        is left for the caller to fold into its next timeout, one SimPy
        event fewer per call on the vmalloc hot path."""
        b = self.buddy
        n = self.node_of(cpu) if node is None else node
        out: list[int] = []
        # __alloc_pages_bulk(): only from a local node above its low
        # watermark plus the request, else one page the ordinary way
        zone = b.zones[n]
        if nr_pages > 0 and zone.nr_free_pages - nr_pages <= zone.wmark_low:
            pfn = yield from self.alloc_pages(cpu, 0, node=n, zero=zero)
            return ([] if pfn is None else [pfn]), 0.0
        while len(out) < nr_pages:
            pfn = b.pcp_pop(n, cpu)
            if pfn is None:
                moved = yield from self._locked(cpu, n, self._refill, n, cpu)
                if not moved:
                    break
                continue
            out.append(pfn)
        if not out and nr_pages > 0:
            pfn = yield from self.alloc_pages(cpu, 0, node=n, zero=zero)
            return ([] if pfn is None else [pfn]), 0.0
        per_page = self.bulk_page_ns - self.locked_ns + (self.zero_ns if zero else 0)
        self._publish()
        return out, self.page_ns + len(out) * per_page

    def free_pages(self, cpu: int, pfn: int, order: int = 0):
        """__free_pages(): order 0 to this CPU's list (draining a batch under
        zone->lock when it reaches pcp->high), larger blocks to the buddy."""
        b = self.buddy
        b.check_order(order)
        node = b.zone_of(pfn).node
        ns = self.free_ns  # free_unref_page(): to this CPU's list
        if order == 0:
            if b.pcp_push(pfn, cpu):
                yield from self._locked(cpu, node, self._drain, node, cpu)
        elif b.pcp_allowed_order(order):
            if b.pcp_push_order(pfn, cpu, order):
                yield from self._locked(cpu, node, self._drain, node, cpu)
        else:
            b.free_pages_prepare(pfn, order)
            yield from self._locked(cpu, node, self._free_one, pfn, order)
            ns = self.page_ns
        yield self.env.timeout(int(ns))
        self._publish()

    def free_pages_batch(self, cpu: int, pfns: list[int]):
        """A loop of __free_page() over order-0 ``pfns`` (vfree(),
        release_pages()): each goes to this CPU's list, a batch drained
        under zone->lock whenever the list passes pcp->high. One timeout for
        the lock-free part instead of one per page."""
        ns = yield from self.free_pages_batch_ns(cpu, pfns)
        yield self.env.timeout(int(ns))

    def free_pages_batch_ns(self, cpu: int, pfns: list[int]):
        """free_pages_batch() returning the lock-free ns for the caller to
        spend (see alloc_pages_bulk_ns)."""
        b = self.buddy
        for pfn in pfns:
            if b.pcp_push(pfn, cpu):
                node = b.zone_of(pfn).node
                yield from self._locked(cpu, node, self._drain, node, cpu)
        self._publish()
        return self.free_ns * len(pfns)

    def split_page(self, cpu: int, pfn: int, order: int):
        """split_page(): one refcount store per tail page (costed like a
        PTE store, estimate)."""
        self.buddy.split_page(pfn, order)
        if order:
            yield self.env.timeout(int(((1 << order) - 1) * self.store_ns))
