"""mm/vmalloc.c: vmalloc/vfree over the KVA allocator, lazy purge, locks.

Models ``__vmalloc_node_range`` (``alloc_vmap_area``, ``vm_area_alloc_pages``,
``vmap_pages_range``), ``vfree`` (``remove_vm_area``,
``free_vmap_area_noflush``) and ``__purge_vmap_area_lazy`` with the locks of
the configured era (``kernel.vmap_locking``):

- ``global`` (v5.2-v6.8): every allocation clips the free tree under
  ``free_vmap_area_lock`` and inserts into the busy tree under
  ``vmap_area_lock``; every free looks up and unlinks under
  ``vmap_area_lock``; lazily freed areas merge back under
  ``free_vmap_area_lock``.
- ``per_node`` (v6.9+): ``vmap_node``s with their own ``busy``, ``lazy``
  and ``pool`` locks. Allocations of at most 256 pages from the vmalloc range
  are served from the allocating CPU's node pool when it has an area of that
  size (``node_alloc``); the global ``free_vmap_area_lock`` is taken only on
  a pool miss, for other ranges and when purged areas merge back.

Costs come from the profile's ``kernel_costs``: one rb-tree node visit per
level the kernel's augmented tree would descend, a PTE write per page, a
page allocation per page. The physical side (buddy allocator, high-order
pages, direct map) is charged per page here and modelled in full by
mm/page_alloc and the CPA model; ``page_alloc: high_order`` is charged like
``bulk`` until the buddy model exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.kernel.kva import PAGE, KvaSpace

if TYPE_CHECKING:
    from simcore.engine import Simulation

# arch/x86 layout, 4-level paging (Documentation/arch/x86/x86_64/mm.rst)
VMALLOC_START = 0xFFFFC90000000000
VMALLOC_END = VMALLOC_START + (32 << 40)
MODULES_VADDR = 0xFFFFFFFFA0000000
MODULES_END = 0xFFFFFFFFFF000000
PMD_SIZE = 2 << 20

VM_FLUSH_RESET_PERMS = 0x100  # include/linux/vmalloc.h
VM_NO_GUARD = 0x40

# mm/vmalloc.c: pools hold areas of at most MAX_VA_SIZE_PAGES (256) pages,
# guard page included.
MAX_VA_SIZE_PAGES = 256
# Bulk allocation costs 0.41 of the per-page path: __alloc_pages 35.60% of
# the profile became __alloc_pages_bulk 14.48% in 5c1f4e690eec
# (20210516202056.2120-3-urezki@gmail.com). Derived, see calibration.md A3.
BULK_PAGE_FACTOR = 14.48 / 35.60
# __purge_vmap_area_lazy() decays 25 % of each pool per drain.
POOL_DECAY_SHIFT = 2


@dataclass(slots=True)
class VmArea:
    addr: int
    size: int  # bytes of KVA including the guard page
    nr_pages: int  # pages backing it (no guard)
    node: int  # vmap_node of the allocating CPU (per_node era)
    flags: int
    range: str


class _Node:
    """struct vmap_node: per-partition busy/lazy lists and size pools."""

    __slots__ = ("busy_lock", "lazy_lock", "pool_lock", "pools", "lazy")

    def __init__(self, sim: Simulation) -> None:
        m = sim.machine
        self.busy_lock = m.spinlock("vn_busy_lock")
        self.lazy_lock = m.spinlock("vn_lazy_lock")
        self.pool_lock = m.spinlock("vn_pool_lock")
        self.pools: dict[int, list[VmArea]] = {}
        self.lazy: list[VmArea] = []


class Vmalloc:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.env = sim.env
        self.metrics = sim.metrics
        m = sim.machine
        k = sim.kernel_knobs
        c = sim.profile.kernel_costs
        self.visit_ns = c.rb_node_visit_ns.value
        self.pte_ns = c.pte_write_ns.value
        self.slab_ns = c.slab_alloc_ns.value
        page_ns = c.page_alloc_ns.value
        self.page_ns = (
            page_ns if k["page_alloc"] == "single" else page_ns * BULK_PAGE_FACTOR
        )
        self.page_free_ns = page_ns  # estimate: freeing costs about an allocation
        self.per_node = k["vmap_locking"] == "per_node"
        self.nr_nodes = k["vmap_nodes"] if self.per_node else 1
        self.lazy_max_pages = k["lazy_max_pages"]
        self.in_workqueue = k["drain_in_workqueue"]
        self.uncontended_ns = m.uncontended_ns
        self.spaces = {
            "vmalloc": KvaSpace(VMALLOC_START, VMALLOC_END),
            "modules": KvaSpace(MODULES_VADDR, MODULES_END),
        }
        self.free_lock = m.spinlock("free_vmap_area_lock")
        self.purge_lock = m.mutex("vmap_purge_lock")
        if self.per_node:
            self.nodes = [_Node(sim) for _ in range(self.nr_nodes)]
        else:
            self.area_lock = m.spinlock("vmap_area_lock")
            self.lazy: list[VmArea] = []
        self.busy: dict[int, VmArea] = {}
        self.lazy_nr = 0
        self.used_bytes = 0
        self.pt_regions: set[int] = set()  # PMD-sized regions with a PTE table
        self.drain_pending = False

    # -- helpers ---------------------------------------------------------------
    def _hold(self, cpu: int, lock, work_ns: float):
        """Take ``lock``, spend ``work_ns`` in it, release it."""
        ev = lock.acquire(cpu)
        if ev is None:
            work_ns += self.uncontended_ns
        else:
            yield ev
        yield self.env.timeout(int(work_ns))
        lock.release(cpu)

    def _addr_node(self, addr: int) -> _Node:
        # addr_to_node(): 64 KiB zones interleaved over the nodes
        return self.nodes[(addr >> 16) % self.nr_nodes]

    def _map_cost(self, area: VmArea) -> float:
        """vmap_pages_range(): PTE writes plus page-table pages on first use."""
        ns = area.nr_pages * self.pte_ns
        first = area.addr // PMD_SIZE
        last = (area.addr + area.nr_pages * PAGE - 1) // PMD_SIZE
        for r in range(first, last + 1):
            if r not in self.pt_regions:
                # a new PTE table: one page allocation, never freed
                self.pt_regions.add(r)
                self.metrics.inc("mem.pagetable_pages")
                ns += self.page_ns
        return ns

    # -- vmalloc -----------------------------------------------------------------
    def vmalloc(
        self,
        cpu: int,
        size: int,
        *,
        range_: str = "vmalloc",
        align: int = PAGE,
        flags: int = 0,
    ):
        """__vmalloc_node_range(): returns the VmArea, or None on failure."""
        t0 = self.env.now
        nr_pages = -(-size // PAGE)
        va_size = nr_pages * PAGE + (0 if flags & VM_NO_GUARD else PAGE)
        node_id = cpu % self.nr_nodes
        # kzalloc of the vm_struct and, on the slow path, a vmap_area
        yield self.env.timeout(int(self.slab_ns))
        area = None
        if self.per_node and range_ == "vmalloc":
            area = yield from self._node_alloc(cpu, node_id, va_size, align)
        if area is None:
            space = self.spaces[range_]
            yield self.env.timeout(int(self.slab_ns))  # preload vmap_area
            ev = self.free_lock.acquire(cpu)
            if ev is not None:
                yield ev
            addr, visits, fit = space.alloc(va_size, align)
            work = visits * self.visit_ns + (self.uncontended_ns if ev is None else 0)
            yield self.env.timeout(int(work))
            self.free_lock.release(cpu)
            if addr is None:
                self.metrics.inc("vmap.alloc_failures")
                return None
            area = VmArea(addr, va_size, nr_pages, node_id, flags, range_)
        self.used_bytes += area.size
        self.metrics.counters["vmap.used_bytes"] = self.used_bytes
        # insert into the busy tree of the node that owns the address
        lock = self._addr_node(area.addr).busy_lock if self.per_node else self.area_lock
        yield from self._hold(
            cpu, lock, self.visit_ns * max(1, len(self.busy).bit_length())
        )
        self.busy[area.addr] = area
        area.nr_pages = nr_pages
        area.flags = flags
        # vm_area_alloc_pages() + vmap_pages_range(): no lock, no flush needed
        # (the range was flushed before it could be reused)
        yield self.env.timeout(int(nr_pages * self.page_ns + self._map_cost(area)))
        self.metrics.latency("vmalloc", self.env.now - t0)
        return area

    def _node_alloc(self, cpu: int, node_id: int, va_size: int, align: int):
        """node_alloc(): the per-node pool fast path of v6.9+."""
        pages = va_size // PAGE
        if pages > MAX_VA_SIZE_PAGES:
            return None
        node = self.nodes[node_id]
        pool = node.pools.get(pages)
        if not pool:  # lockless emptiness check
            self.metrics.inc("vmap.pool_misses")
            return None
        yield from self._hold(cpu, node.pool_lock, self.visit_ns)
        pool = node.pools.get(pages)
        if not pool or pool[0].addr % align:
            self.metrics.inc("vmap.pool_misses")
            return None
        self.metrics.inc("vmap.pool_hits")
        return pool.pop()

    # -- vfree -------------------------------------------------------------------
    def vfree(self, cpu: int, area: VmArea):
        """vfree(): unlink, clear PTEs, free pages, lazily free the KVA."""
        t0 = self.env.now
        lock = self._addr_node(area.addr).busy_lock if self.per_node else self.area_lock
        yield from self._hold(
            cpu, lock, self.visit_ns * max(1, len(self.busy).bit_length())
        )
        del self.busy[area.addr]
        self.used_bytes -= area.size
        self.metrics.counters["vmap.used_bytes"] = self.used_bytes
        # vunmap_range_noflush(): clear PTEs only, then __free_page() each page
        yield self.env.timeout(int(area.nr_pages * (self.pte_ns + self.page_free_ns)))
        # free_vmap_area_noflush(): account the whole area, guard included
        self.lazy_nr += area.size // PAGE
        if self.per_node:
            owner = self.nodes[area.node]
            yield from self._hold(cpu, owner.lazy_lock, self.visit_ns)
            owner.lazy.append(area)
        else:
            self.lazy.append(area)
        if area.flags & VM_FLUSH_RESET_PERMS:
            # vm_reset_perms() -> _vm_unmap_aliases(): purge and flush now
            yield from self.purge(cpu, decay=True)
        elif self.lazy_nr > self.lazy_max_pages:
            if not self.in_workqueue:
                yield from self.purge(cpu, decay=True)
            elif not self.drain_pending:
                # schedule_work(&drain_vmap_work): runs on this CPU's kworker
                self.drain_pending = True
                self.env.process(self._drain_work(cpu))
        self.metrics.latency("vfree", self.env.now - t0)

    def _drain_work(self, cpu: int):
        yield from self.purge(cpu, decay=True)
        self.drain_pending = False

    # -- purge -------------------------------------------------------------------
    def purge(self, cpu: int, *, decay: bool, full_decay: bool = False):
        """__purge_vmap_area_lazy() under vmap_purge_lock: flush once, merge."""
        ev = self.purge_lock.acquire(cpu)
        if ev is not None:
            yield ev
        if self.per_node:
            areas: list[VmArea] = []
            for node in self.nodes:
                if decay:
                    yield from self._decay_pools(cpu, node, full_decay)
                if node.lazy:
                    yield from self._hold(cpu, node.lazy_lock, self.visit_ns)
                    areas.extend(node.lazy)
                    node.lazy = []
        else:
            areas, self.lazy = self.lazy, []
        if areas:
            start = min(a.addr for a in areas)
            end = max(a.addr + a.size for a in areas)
            ns = self.sim.machine.flush.kernel_range(cpu, start, end)
            yield self.env.timeout(ns)
            yield from self._merge(cpu, areas)
            self.lazy_nr -= sum(a.size // PAGE for a in areas)
            self.metrics.inc("vmap.lazy_purges")
        self.purge_lock.release(cpu)

    def _merge(self, cpu: int, areas: list[VmArea]):
        """purge_vmap_node(): small areas back to their pool, the rest merged."""
        to_tree = []
        for a in areas:
            if (
                self.per_node
                and a.range == "vmalloc"
                and a.size // PAGE <= MAX_VA_SIZE_PAGES
            ):
                self.nodes[a.node].pools.setdefault(a.size // PAGE, []).append(a)
            else:
                to_tree.append(a)
        if self.per_node:
            pooled = len(areas) - len(to_tree)
            if pooled:
                node = self.nodes[cpu % self.nr_nodes]
                yield from self._hold(cpu, node.pool_lock, pooled * self.visit_ns)
        if to_tree:
            yield from self._free_to_tree(cpu, to_tree)

    def _free_to_tree(self, cpu: int, areas: list[VmArea]):
        ev = self.free_lock.acquire(cpu)
        if ev is not None:
            yield ev
        visits = 0
        for a in areas:
            visits += self.spaces[a.range].free(a.addr, a.size)
        yield self.env.timeout(int(visits * self.visit_ns))
        self.free_lock.release(cpu)

    def _decay_pools(self, cpu: int, node: _Node, full: bool):
        back: list[VmArea] = []
        for pool in node.pools.values():
            n = len(pool) if full else len(pool) >> POOL_DECAY_SHIFT
            if n:
                back.extend(pool[-n:])
                del pool[-n:]
        if back:
            yield from self._hold(cpu, node.pool_lock, len(back) * self.visit_ns)
            yield from self._free_to_tree(cpu, back)

    def finish(self) -> None:
        self.metrics.counters["vmap.used_bytes"] = self.used_bytes
        self.metrics.counters["vmap.lazy_pages"] = self.lazy_nr
