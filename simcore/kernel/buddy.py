"""mm/page_alloc.c: the buddy allocator's free lists, per NUMA node, and
the steps of its per-CPU lists, without time.

:class:`BuddyAllocator` is the data structure alone (no time, no SimPy),
so property tests can drive it directly;
:class:`~simcore.kernel.page_alloc.PageAlloc` wraps it in SimPy generators
that take ``zone->lock`` and charge the profile's ``kernel_costs``.

Kernel functions modelled, with the same steps:

- ``__rmqueue_smallest()``: take the head block of the smallest non-empty
  free list of order >= the request; ``expand()`` keeps the lower half and
  puts each upper half on the free list one order down (at its head);
- ``__free_one_page()``: while the buddy (``pfn ^ (1 << order)``) is a free
  block of the same order, unlink it and merge, up to ``MAX_PAGE_ORDER``
  (10); the result goes to the head of its list, or to the tail when
  ``buddy_merge_likely()`` sees the next-order buddy free;
- the per-CPU list steps (timed in :mod:`simcore.kernel.page_alloc`):
  ``rmqueue_pcplist()``'s lockless pop, ``rmqueue_bulk()``,
  ``free_unref_page()``, ``free_pcppages_bulk()``;
- ``split_page()``, ``drain_all_pages()``, the zonelists of
  ``build_zonelists()``, ``prep_new_page()`` and the "Bad page state"
  check of ``free_pages_prepare()``; :meth:`BuddyAllocator.check` holds
  the invariants.

The starting states (fresh, ``kernel.fragmentation``, ``kernel.buddyinfo``)
and the lazy materialisation of a fragmented node are in
:mod:`simcore.kernel.buddy_seed`; ``struct zone`` in
:mod:`simcore.kernel.mmzone`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from simcore.errors import CaptureError, SimulationError
from simcore.kernel.buddy_seed import BuddySeed
from simcore.kernel.buddyinfo import MAX_PAGE_ORDER, NR_ORDERS
from simcore.kernel.mmzone import MAX_ORDER_NR_PAGES, PAGEBLOCK_ORDER, Zone

# PAGE_ALLOC_COSTLY_ORDER: orders 1..3 and the THP order have per-CPU lists
# of their own from 44042b449872 (v5.14)
PAGE_ALLOC_COSTLY_ORDER = 3
# the per-CPU lists in pindex order (order 0, 1..3, then THP), as
# free_pcppages_bulk() walks them round robin
PCP_ORDERS = (0, 1, 2, 3, PAGEBLOCK_ORDER)


class BuddyAllocator(BuddySeed):
    """The buddy allocator's state and operations, without time.

    ``node_pages`` gives each node's size in pages (a multiple of 1024);
    node n covers pfns ``[sum(node_pages[:n]), sum(node_pages[:n+1]))``.
    ``buddyinfo`` (per node, 11 counts) or ``fragmentation`` (0..1, with
    ``rng``) pick the starting state; the default is all memory free.

    The ``alloc_*``/``free_*`` methods are whole kernel calls; the
    ``pcp_*``, ``rmqueue`` and ``free_one`` steps are what they are made
    of, for the timed front end to call with ``zone->lock`` held where the
    kernel holds it.
    """

    def __init__(
        self,
        node_pages: Sequence[int],
        *,
        fragmentation: float = 0.0,
        rng: np.random.Generator | None = None,
        buddyinfo: Sequence[Sequence[int]] | None = None,
        buddyinfo_file: str = "<buddyinfo>",
    ) -> None:
        if not node_pages:
            raise SimulationError("a buddy allocator needs at least one node")
        if not 0.0 <= fragmentation <= 1.0:
            raise SimulationError(f"fragmentation {fragmentation} outside 0..1")
        self.zones: list[Zone] = []
        start = 0
        for n, pages in enumerate(node_pages):
            if pages <= 0 or pages % MAX_ORDER_NR_PAGES:
                raise SimulationError(
                    f"node {n}: {pages} pages is not a positive multiple of "
                    f"{MAX_ORDER_NR_PAGES}"
                )
            self.zones.append(Zone(n, start, pages))
            start += pages
        self.total_pages = start
        # The zonelists, built once as build_zonelists() does at boot.
        n = len(self.zones)
        self._zonelists = [
            sorted(range(n), key=lambda x, node=node: (abs(x - node), x))
            for node in range(n)
        ]
        self.nr_free_pages = 0  # in the buddy lists (NR_FREE_PAGES)
        self.nr_pcp_pages = 0
        self.nr_allocated_pages = 0
        # Blocks handed out whole (pfn -> order) and split_page()d blocks
        # (head pfn -> [order, bitmask of pages not yet freed]).
        self.allocated: dict[int, int] = {}
        # Keyed by (head, order): the freed front pages of a split block can
        # merge, be handed out and be split again (same head, lower order)
        # while the block's other pages are still in use.
        self.split: dict[tuple[int, int], list[int]] = {}
        if buddyinfo is not None:
            if len(buddyinfo) != len(self.zones):
                raise CaptureError(
                    f"the capture has {len(buddyinfo)} NUMA node(s), the "
                    f"machine {len(self.zones)}",
                    file=buddyinfo_file,
                    expected="a capture from a machine with as many nodes "
                    "(topology.sockets x numa_nodes_per_socket)",
                )
            for zone, counts in zip(self.zones, buddyinfo, strict=True):
                self._seed_counts(zone, list(counts), buddyinfo_file)
        elif fragmentation > 0.0:
            if rng is None:
                raise SimulationError("fragmentation needs a random generator")
            for zone in self.zones:
                self._seed_fragmented(zone, fragmentation, rng)
        else:
            for zone in self.zones:
                zone.runs.append([zone.start_pfn, zone.end_pfn])
                zone.nr_free[MAX_PAGE_ORDER] = zone.nr_pages >> MAX_PAGE_ORDER
        for zone in self.zones:
            free = zone.free_pages()
            zone.reserved = zone.nr_pages - free
            zone.nr_free_pages = free
            self.nr_free_pages += free
        self.nr_reserved_pages = sum(z.reserved for z in self.zones)
        self._initial = [list(z.nr_free) for z in self.zones]
        # kernel.pcp_high_order: the v5.14+ per-CPU lists of orders 1..3 and
        # THP (pcp_allowed_order()); order 0 only before
        self.pcp_orders = False

    # -- free-list primitives --------------------------------------------------
    def _pop(self, zone: Zone, order: int) -> int:
        """Take the head block of free_area[order] (nr_free[order] > 0)."""
        fl = zone.free[order]
        while True:
            if fl:
                pfn = fl.popitem()[0]
                break
            if order == MAX_PAGE_ORDER and zone.runs:
                run = zone.runs[0]
                pfn = run[0]
                run[0] += MAX_ORDER_NR_PAGES
                if run[0] == run[1]:
                    zone.runs.popleft()
                break
            self._materialize(zone)
        zone.nr_free[order] -= 1
        zone.nr_free_pages -= 1 << order
        self.nr_free_pages -= 1 << order
        return pfn

    def _add(self, zone: Zone, pfn: int, order: int, *, tail: bool) -> None:
        fl = zone.free[order]
        fl[pfn] = None
        if tail:
            fl.move_to_end(pfn, last=False)
        zone.nr_free[order] += 1
        zone.nr_free_pages += 1 << order
        self.nr_free_pages += 1 << order

    def rmqueue(self, node: int, order: int) -> tuple[int, int] | None:
        """__rmqueue_smallest() + expand(); caller holds zone->lock.

        Returns (pfn, order the block was taken from), or None.
        """
        zone = self.zones[node]
        for current in range(order, NR_ORDERS):
            if zone.nr_free[current]:
                pfn = self._pop(zone, current)
                high = current
                while high > order:
                    high -= 1
                    self._add(zone, pfn + (1 << high), high, tail=False)
                return pfn, current
        return None

    def free_one(self, pfn: int, order: int) -> int:
        """__free_one_page(); caller holds zone->lock. Returns merges done."""
        zone = self.zone_of(pfn)
        merges = 0
        while order < MAX_PAGE_ORDER:
            buddy = pfn ^ (1 << order)
            fl = zone.free[order]
            if buddy not in fl:
                break
            del fl[buddy]
            zone.nr_free[order] -= 1
            zone.nr_free_pages -= 1 << order
            self.nr_free_pages -= 1 << order
            pfn &= ~(1 << order)
            order += 1
            merges += 1
        tail = False
        if order < MAX_PAGE_ORDER - 1:  # buddy_merge_likely()
            higher = pfn & ~(1 << order)
            tail = (higher ^ (1 << (order + 1))) in zone.free[order + 1]
        self._add(zone, pfn, order, tail=tail)
        return merges

    # -- per-CPU lists ---------------------------------------------------------
    def _pcp(self, zone: Zone, cpu: int) -> deque[int]:
        pcp = zone.pcp.get(cpu)
        if pcp is None:
            pcp = zone.pcp[cpu] = deque()
        return pcp

    def pcp_pop(self, node: int, cpu: int) -> int | None:
        """The lockless part of rmqueue_pcplist(): head of this CPU's list."""
        pcp = self._pcp(self.zones[node], cpu)
        if not pcp:
            return None
        pfn = pcp.pop()
        self.nr_pcp_pages -= 1
        self.prep_new_page(pfn, 0)
        return pfn

    def pcp_refill(self, node: int, cpu: int) -> int:
        """rmqueue_bulk(zone, 0, pcp->batch): caller holds zone->lock.

        Each page is added at the list's tail, so the first one taken from
        the buddy is the next handed out. Returns pages moved.
        """
        zone = self.zones[node]
        pcp = self._pcp(zone, cpu)
        moved = 0
        for _ in range(zone.batch):
            got = self.rmqueue(node, 0)
            if got is None:
                break
            pcp.appendleft(got[0])
            moved += 1
        self.nr_pcp_pages += moved
        return moved

    def pcp_push(self, pfn: int, cpu: int) -> bool:
        """free_unref_page() for an order-0 page: to the head of this CPU's
        list for the page's zone. True when the list reached pcp->high."""
        self.free_pages_prepare(pfn, 0)
        zone = self.zone_of(pfn)
        pcp = self._pcp(zone, cpu)
        pcp.append(pfn)
        self.nr_pcp_pages += 1
        return len(pcp) + zone.pcp_hi_pages.get(cpu, 0) >= zone.high

    def pcp_free_bulk(self, node: int, cpu: int, count: int | None = None) -> int:
        """free_pcppages_bulk(): the oldest ``count`` pages (default
        pcp->batch) back to the buddy; caller holds zone->lock. Returns the
        number of blocks moved plus merges done (the list work). With
        high-order lists holding blocks, the lists are visited round robin
        from where the last call stopped, each drained from its tail until
        ``count`` pages went or it is empty."""
        zone = self.zones[node]
        pcp = self._pcp(zone, cpu)
        if not zone.pcp_hi_pages.get(cpu):
            n = min(len(pcp), zone.batch if count is None else count)
            work = 0
            for _ in range(n):
                work += 1 + self.free_one(pcp.popleft(), 0)
            self.nr_pcp_pages -= n
            return work
        return self._pcp_free_round_robin(
            zone, cpu, zone.batch if count is None else count
        )

    def _pcp_free_round_robin(self, zone: Zone, cpu: int, count: int) -> int:
        lists = [self._pcp(zone, cpu)] + [
            zone.pcp_hi[cpu].setdefault(o, deque()) for o in PCP_ORDERS[1:]
        ]
        pindex = zone.pcp_pindex.get(cpu, 0)
        work = 0
        while count > 0 and any(lists):
            pindex = (pindex + 1) % len(lists)
            lst = lists[pindex]
            order = PCP_ORDERS[pindex]
            while lst and count > 0:
                work += 1 + self.free_one(lst.popleft(), order)
                count -= 1 << order
                self.nr_pcp_pages -= 1 << order
                if order:
                    zone.pcp_hi_pages[cpu] -= 1 << order
        zone.pcp_pindex[cpu] = pindex
        return work

    # -- high-order per-CPU lists (v5.14+) -------------------------------------------
    def pcp_allowed_order(self, order: int) -> bool:
        """pcp_allowed_order(): orders 1..PAGE_ALLOC_COSTLY_ORDER and THP's
        have per-CPU lists in the high-order era (order 0 always does)."""
        return self.pcp_orders and (
            0 < order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER
        )

    def _pcp_order(self, zone: Zone, cpu: int, order: int) -> deque[int]:
        lists = zone.pcp_hi.get(cpu)
        if lists is None:
            lists = zone.pcp_hi[cpu] = {}
        lst = lists.get(order)
        if lst is None:
            lst = lists[order] = deque()
        return lst

    def pcp_pop_order(self, node: int, cpu: int, order: int) -> int | None:
        """rmqueue_pcplist() for an order > 0: the head of its list."""
        zone = self.zones[node]
        lst = self._pcp_order(zone, cpu, order)
        if not lst:
            return None
        pfn = lst.pop()
        self.nr_pcp_pages -= 1 << order
        zone.pcp_hi_pages[cpu] -= 1 << order
        self.prep_new_page(pfn, order)
        return pfn

    def pcp_refill_order(self, node: int, cpu: int, order: int) -> int:
        """rmqueue_bulk(zone, order, batch): the batch scaled down by the
        order (max(pcp->batch >> order, 2)); caller holds zone->lock.
        Returns blocks moved."""
        zone = self.zones[node]
        lst = self._pcp_order(zone, cpu, order)
        batch = max(zone.batch >> order, 2) if zone.batch > 1 else 1
        moved = 0
        for _ in range(batch):
            got = self.rmqueue(node, order)
            if got is None:
                break
            lst.appendleft(got[0])
            moved += 1
        self.nr_pcp_pages += moved << order
        zone.pcp_hi_pages[cpu] = zone.pcp_hi_pages.get(cpu, 0) + (moved << order)
        return moved

    def pcp_push_order(self, pfn: int, cpu: int, order: int) -> bool:
        """free_unref_page() of an order > 0 block with a list of its own.
        True when the CPU's lists together reached pcp->high."""
        self.free_pages_prepare(pfn, order)
        zone = self.zone_of(pfn)
        self._pcp_order(zone, cpu, order).append(pfn)
        self.nr_pcp_pages += 1 << order
        zone.pcp_hi_pages[cpu] = zone.pcp_hi_pages.get(cpu, 0) + (1 << order)
        return len(self._pcp(zone, cpu)) + zone.pcp_hi_pages[cpu] >= zone.high

    # -- whole calls (no time) ---------------------------------------------------
    def alloc_pages(
        self, node: int, order: int, *, cpu: int = 0, thisnode: bool = False
    ) -> int | None:
        """__alloc_pages(): local node first, then the others unless
        ``thisnode`` (__GFP_THISNODE). None when no block is free."""
        self.check_order(order)
        for n in self.fallback_nodes(node, thisnode):
            if order == 0:
                pfn = self.pcp_pop(n, cpu)
                if pfn is None and self.pcp_refill(n, cpu):
                    pfn = self.pcp_pop(n, cpu)
                if pfn is not None:
                    return pfn
            elif self.pcp_allowed_order(order):
                pfn = self.pcp_pop_order(n, cpu, order)
                if pfn is None and self.pcp_refill_order(n, cpu, order):
                    pfn = self.pcp_pop_order(n, cpu, order)
                if pfn is not None:
                    return pfn
            else:
                got = self.rmqueue(n, order)
                if got is not None:
                    self.prep_new_page(got[0], order)
                    return got[0]
        return None

    def alloc_pages_bulk(self, node: int, nr_pages: int, *, cpu: int = 0) -> list[int]:
        """alloc_pages_bulk(): up to ``nr_pages`` order-0 pages."""
        out: list[int] = []
        while len(out) < nr_pages:
            pfn = self.pcp_pop(node, cpu)
            if pfn is None:
                if not self.pcp_refill(node, cpu):
                    break
                continue
            out.append(pfn)
        if not out and nr_pages > 0:
            pfn = self.alloc_pages(node, 0, cpu=cpu)
            if pfn is not None:
                out.append(pfn)
        return out

    def free_pages(self, pfn: int, order: int, *, cpu: int = 0) -> None:
        """__free_pages(): order 0 through this CPU's list, larger blocks
        straight to the buddy (__free_pages_ok)."""
        self.check_order(order)
        if order == 0:
            if self.pcp_push(pfn, cpu):
                self.pcp_free_bulk(self.zone_of(pfn).node, cpu)
        elif self.pcp_allowed_order(order):
            if self.pcp_push_order(pfn, cpu, order):
                self.pcp_free_bulk(self.zone_of(pfn).node, cpu)
        else:
            self.free_pages_prepare(pfn, order)
            self.free_one(pfn, order)

    def split_page(self, pfn: int, order: int) -> None:
        """split_page(): a block handed out whole becomes 2^order pages."""
        if self.allocated.get(pfn) != order:
            raise SimulationError(
                f"split_page of pfn {pfn:#x} order {order}: not an allocated "
                "block of that order"
            )
        if order == 0:
            return
        del self.allocated[pfn]
        self.split[pfn, order] = [order, (1 << (1 << order)) - 1]

    def drain_pages(self) -> None:
        """drain_all_pages(): empty every CPU's list back to the buddy."""
        for zone in self.zones:
            for cpu in set(zone.pcp) | set(zone.pcp_hi):
                held = len(zone.pcp.get(cpu, ())) + zone.pcp_hi_pages.get(cpu, 0)
                if held:
                    self.pcp_free_bulk(zone.node, cpu, held)

    # -- bookkeeping -------------------------------------------------------------
    def fallback_nodes(self, node: int, thisnode: bool = False) -> list[int]:
        """The zonelist order: the preferred node, then the others by
        increasing node distance (taken as the distance between node ids)."""
        if thisnode:
            return [node]
        return self._zonelists[node]

    def zone_of(self, pfn: int) -> Zone:
        for zone in self.zones:
            if zone.start_pfn <= pfn < zone.end_pfn:
                return zone
        raise SimulationError(f"pfn {pfn:#x} is outside RAM")

    def check_order(self, order: int) -> None:
        if not 0 <= order <= MAX_PAGE_ORDER:
            raise SimulationError(f"page order {order} outside 0..{MAX_PAGE_ORDER}")

    def prep_new_page(self, pfn: int, order: int) -> None:
        """Record a block as handed out (prep_new_page() sets its refcount)."""
        self.allocated[pfn] = order
        self.nr_allocated_pages += 1 << order

    def free_pages_prepare(self, pfn: int, order: int) -> None:
        """free_pages_prepare()'s "Bad page state" check: only pages that
        were handed out, and not freed since, may come back."""
        if self.allocated.get(pfn) == order:
            del self.allocated[pfn]
            self.nr_allocated_pages -= 1 << order
            return
        if order == 0:
            for k in range(1, NR_ORDERS):
                head = pfn & ~((1 << k) - 1)
                ent = self.split.get((head, k))
                if ent is not None:
                    bit = 1 << (pfn - head)
                    if ent[1] & bit:
                        ent[1] &= ~bit
                        if not ent[1]:
                            del self.split[head, k]
                        self.nr_allocated_pages -= 1
                        return
        raise SimulationError(
            f"freeing pfn {pfn:#x} order {order}: not allocated (double free?)"
        )

    # -- inspection ----------------------------------------------------------------
    def buddyinfo(self, node: int) -> list[int]:
        """free_area[order].nr_free per order, as /proc/buddyinfo shows it."""
        return list(self.zones[node].nr_free)

    def initial_buddyinfo(self, node: int) -> list[int]:
        return list(self._initial[node])

    def free_blocks(self, node: int) -> list[tuple[int, int]]:
        """Every free block (pfn, order) of a node, sorted; regions not yet
        materialised are enumerated too. Memory and time follow the node's
        size: for tests on small nodes."""
        zone = self.zones[node]
        out = [(pfn, k) for k in range(NR_ORDERS) for pfn in zone.free[k]]
        for lo, hi in zone.runs:
            out += [(p, MAX_PAGE_ORDER) for p in range(lo, hi, MAX_ORDER_NR_PAGES)]
        lazy = zone.lazy
        if lazy is not None:
            for r in range(lazy.cursor, lazy.nr_regions):
                base = zone.start_pfn + (r << MAX_PAGE_ORDER)
                pat = lazy.classify(r)
                if pat is None:
                    out.append((base, MAX_PAGE_ORDER))
                else:
                    out += [(base + off, k) for off, k in lazy.patterns[pat][0]]
        return sorted(out)

    def check(self, *, full: bool = False) -> None:
        """Raise SimulationError if an invariant is broken.

        Always: per-order counts match the lists, and every page is free,
        on a per-CPU list, handed out or reserved exactly once in total.
        With ``full`` (small nodes only): no page is in two places and no
        two free buddies of the same order are left unmerged.
        """
        free = pcp = 0
        for zone in self.zones:
            for k in range(NR_ORDERS):
                listed = len(zone.free[k]) + zone.lazy_nr[k]
                if k == MAX_PAGE_ORDER:
                    listed += sum(hi - lo for lo, hi in zone.runs) >> MAX_PAGE_ORDER
                if listed != zone.nr_free[k]:
                    raise SimulationError(
                        f"node {zone.node} order {k}: nr_free {zone.nr_free[k]} "
                        f"but {listed} blocks listed"
                    )
            if zone.nr_free_pages != zone.free_pages():
                raise SimulationError(f"node {zone.node}: NR_FREE_PAGES out of step")
            free += zone.free_pages()
            pcp += sum(len(p) for p in zone.pcp.values())
            for cpu, lists in zone.pcp_hi.items():
                held = sum(len(lst) << o for o, lst in lists.items())
                if held != zone.pcp_hi_pages.get(cpu, 0):
                    raise SimulationError(
                        f"node {zone.node} CPU {cpu}: pcp pages out of step"
                    )
                pcp += held
        split = sum(bin(m).count("1") for _, m in self.split.values())
        whole = sum(1 << k for k in self.allocated.values())
        if free != self.nr_free_pages or pcp != self.nr_pcp_pages:
            raise SimulationError("free or per-CPU page counters out of step")
        if whole + split != self.nr_allocated_pages:
            raise SimulationError("allocated page counter out of step")
        total = free + pcp + self.nr_allocated_pages + self.nr_reserved_pages
        if total != self.total_pages:
            raise SimulationError(
                f"{total} pages accounted for, RAM has {self.total_pages}"
            )
        if full:
            self._check_overlaps()

    def _check_overlaps(self) -> None:
        spans: list[tuple[int, int]] = []
        for zone in self.zones:
            blocks = self.free_blocks(zone.node)
            keyed = {(pfn, k) for pfn, k in blocks}
            for pfn, k in blocks:
                if k < MAX_PAGE_ORDER and (pfn ^ (1 << k), k) in keyed:
                    raise SimulationError(f"free buddies {pfn:#x} order {k} unmerged")
                spans.append((pfn, pfn + (1 << k)))
            for p in zone.pcp.values():
                spans += [(pfn, pfn + 1) for pfn in p]
            for lists in zone.pcp_hi.values():
                for o, lst in lists.items():
                    spans += [(pfn, pfn + (1 << o)) for pfn in lst]
        spans += [(pfn, pfn + (1 << k)) for pfn, k in self.allocated.items()]
        for (head, k), (_, mask) in self.split.items():
            spans += [(head + i, head + i + 1) for i in range(1 << k) if mask >> i & 1]
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise SimulationError(f"pfn {start:#x} is in two places at once")
