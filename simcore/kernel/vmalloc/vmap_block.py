"""mm/vmalloc.c "Per cpu kva allocator": vm_map_ram() and vmap blocks.

Kernel functions modelled: ``vm_map_ram()`` / ``vm_unmap_ram()`` with
per-CPU ``vmap_block``s: ``vb_alloc()``, ``new_vmap_block()``,
``vb_free()``, ``free_vmap_block()``, ``purge_fragmented_block()``,
``purge_fragmented_blocks_allcpus()``, ``_vm_unmap_aliases()`` /
``vm_unmap_aliases()``, ``addr_to_vb_xa()`` and ``addr_to_vb_idx()``;
``struct vmap_block`` is :class:`VmapBlock`, ``struct vmap_block_queue``
is :class:`_Vbq`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT
from simcore.errors import SimulationError
from simcore.kernel.vmalloc.area import VMAP_BLOCK, VMAP_RAM, VmArea
from simcore.kernel.vmalloc.vmap_area import KVA_END, rb_depth

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


# --- per-CPU vmap blocks (mm/vmalloc.c "Per cpu kva allocator") ------------
# CONFIG_NR_CPUS: arch/x86/Kconfig NR_CPUS_DEFAULT is 8192 with MAXSMP,
# which x86-64 distribution kernels enable (recalled: Fedora/RHEL set
# CONFIG_MAXSMP=y, Ubuntu sets NR_CPUS=8192). VMAP_BBMAP_BITS depends on
# this compile-time value, not on the CPUs online.
NR_CPUS = 8192
BITS_PER_LONG = 64
VMALLOC_SPACE = 128 << 30  # 64-bit sizing hint, not the real range
VMALLOC_PAGES = VMALLOC_SPACE // PAGE
VMAP_MAX_ALLOC = BITS_PER_LONG  # pages; larger vm_map_ram goes to alloc_vmap_area
VMAP_BBMAP_BITS_MAX = 1024
VMAP_BBMAP_BITS_MIN = VMAP_MAX_ALLOC * 2


def _roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def vmap_bbmap_bits(nr_cpus: int) -> int:
    """VMAP_BBMAP_BITS for a kernel built with CONFIG_NR_CPUS = nr_cpus."""
    per_cpu = VMALLOC_PAGES // _roundup_pow_of_two(nr_cpus) // 16
    return min(VMAP_BBMAP_BITS_MAX, max(VMAP_BBMAP_BITS_MIN, per_cpu))


VMAP_BBMAP_BITS = vmap_bbmap_bits(NR_CPUS)
VMAP_BLOCK_SIZE = VMAP_BBMAP_BITS * PAGE
# Purge a fragmented block only when less than a quarter of it is free.
VMAP_PURGE_THRESHOLD = VMAP_BBMAP_BITS // 4


class VmapBlock:
    """struct vmap_block: one VMAP_BLOCK_SIZE area carved by bump allocation."""

    __slots__ = ("va", "lock", "free", "dirty", "dirty_min", "dirty_max", "used", "cpu")

    def __init__(self, va: VmArea, lock, cpu: int, order: int) -> None:
        self.va = va
        self.lock = lock
        self.free = VMAP_BBMAP_BITS - (1 << order)
        self.dirty = 0
        self.dirty_min = VMAP_BBMAP_BITS
        self.dirty_max = 0
        self.used = (1 << (1 << order)) - 1  # used_map bitmap
        self.cpu = cpu


class _Vbq:
    """struct vmap_block_queue: a CPU's free block list and its xarray."""

    __slots__ = ("lock", "xa_lock", "free", "xa")

    def __init__(self, kernel: Kernel) -> None:
        m = kernel.machine
        self.lock = m.spinlock("vbq_lock")
        self.xa_lock = m.spinlock("vmap_blocks_xa_lock")
        self.free: list[VmapBlock] = []
        self.xa: dict[int, VmapBlock] = {}


def _fragmented(vb: VmapBlock) -> bool:
    """All of the block is free or dirty, and not all of it dirty yet."""
    return vb.free + vb.dirty == VMAP_BBMAP_BITS and vb.dirty != VMAP_BBMAP_BITS


class VmapBlockMixin:
    """vm_map_ram(), vm_unmap_ram() and vm_unmap_aliases() over vmap blocks.

    Part of :class:`simcore.kernel.vmalloc.core.Vmalloc`, whose
    ``__init__`` sets the state these methods use.
    """

    # -- helpers ---------------------------------------------------------------
    def _hold2(self, cpu: int, outer, inner, work_ns: float):
        """Nested sections (``vb->lock`` then ``vbq->lock``) as one hold."""
        work_ns += yield from outer.take(cpu)
        work_ns += yield from inner.take(cpu)
        yield self.env.timeout(int(work_ns))
        inner.release(cpu)
        outer.release(cpu)

    # -- vm_map_ram / vmap blocks ---------------------------------------------------
    def _vbq(self, cpu: int) -> _Vbq:
        q = self._vbqs.get(cpu)
        if q is None:
            q = self._vbqs[cpu] = _Vbq(self.kernel)
        return q

    def _vb_xa(self, addr: int) -> _Vbq:
        # addr_to_vb_xa(): blocks hashed over the per-CPU xarrays
        return self._vbq((addr // VMAP_BLOCK_SIZE) % self.nr_cpus)

    def _vb_idx(self, addr: int) -> int:
        # addr_to_vb_idx()
        return (
            addr - (self.layout.vmalloc_start & ~(VMAP_BLOCK_SIZE - 1))
        ) // VMAP_BLOCK_SIZE

    def vm_map_ram(self, cpu: int, pages: list[int]):
        """vm_map_ram(pages, count): map the caller's pfns; returns the
        address, or None on failure."""
        count = len(pages)
        if count <= 0:
            raise ValueError("vm_map_ram of no pages")
        t0 = self.env.now
        if count <= VMAP_MAX_ALLOC:
            addr, ns = yield from self._vb_alloc(cpu, count)
        else:
            va = yield from self._alloc_vmap_area(
                cpu,
                count * PAGE,
                PAGE,
                "vmalloc",
                pre_ns=0,
                va_flags=VMAP_RAM,
                has_vm=False,
            )
            addr = None if va is None else va.addr
            if va is not None:
                va.nr_pages = count
            ns = 0.0
        if addr is None:
            self.metrics.inc("vmap.alloc_failures")
            return None
        yield self.env.timeout(int(ns))
        # vmap_pages_range() of the caller's pages
        ok = yield from self.pt.vmap_pages_range(cpu, addr, pages)
        if not ok:
            yield from self.vm_unmap_ram(cpu, addr, count)
            self.metrics.inc("vmap.alloc_failures")
            return None
        self.metrics.latency("vm_map_ram", self.env.now - t0)
        return addr

    def _vb_alloc(self, cpu: int, count: int):
        """vb_alloc(): bump-allocate 2^order pages from this CPU's blocks.

        Returns (address or None, lock-free ns still to charge).
        """
        order = (count - 1).bit_length()  # get_order(count * PAGE_SIZE)
        need = 1 << order
        vbq = self._vbq(cpu)
        walked = 0
        for vb in list(vbq.free):  # list_for_each_entry_rcu
            walked += 1
            if vb.free < need:  # READ_ONCE, no lock
                continue
            extra = yield from vb.lock.take(cpu)
            if vb.free < need:
                vb.lock.release(cpu)
                continue
            pages_off = VMAP_BBMAP_BITS - vb.free
            vb.free -= need
            vb.used |= ((1 << need) - 1) << pages_off
            work = self.visit_ns + extra
            if vb.free == 0:
                # list_del_rcu() under vbq->lock
                extra = yield from vbq.lock.take(cpu)
                if vb in vbq.free:
                    vbq.free.remove(vb)
                work += self.visit_ns + extra
                yield self.env.timeout(int(work))
                vbq.lock.release(cpu)
            else:
                yield self.env.timeout(int(work))
            vb.lock.release(cpu)
            # The lockless list walk happened before the lock; charging it
            # after the section moves the acquisition by a few ns and saves
            # a SimPy event.
            return vb.va.addr + (pages_off << PAGE_SHIFT), walked * self.visit_ns
        addr = yield from self._new_vmap_block(cpu, order)
        return addr, walked * self.visit_ns

    def _new_vmap_block(self, cpu: int, order: int):
        """new_vmap_block(): a fresh block, its first 2^order pages in use."""
        va = yield from self._alloc_vmap_area(
            cpu,
            VMAP_BLOCK_SIZE,
            VMAP_BLOCK_SIZE,
            "vmalloc",
            pre_ns=self.slab_ns,  # kmalloc_node() of the vmap_block
            va_flags=VMAP_RAM | VMAP_BLOCK,
            has_vm=False,
        )
        if va is None:
            return None
        va.nr_pages = VMAP_BBMAP_BITS
        vb = VmapBlock(va, self.kernel.machine.spinlock("vb_lock"), cpu, order)
        xa = self._vb_xa(va.addr)
        extra = yield from xa.xa_lock.take(cpu)
        xa.xa[self._vb_idx(va.addr)] = vb  # xa_insert()
        yield self.env.timeout(int(self.visit_ns * 2 + extra))
        xa.xa_lock.release(cpu)
        vbq = self._vbq(cpu)
        extra = yield from vbq.lock.take(cpu)
        vbq.free.append(vb)  # list_add_tail_rcu()
        yield self.env.timeout(int(self.visit_ns + extra))
        vbq.lock.release(cpu)
        self.metrics.inc("vmap.blocks")
        return va.addr

    def vm_unmap_ram(self, cpu: int, addr: int, count: int):
        """vm_unmap_ram(mem, count): no flush; the KVA is recycled lazily."""
        t0 = self.env.now
        if count <= VMAP_MAX_ALLOC:
            yield from self._vb_free(cpu, addr, count)
        else:
            va = yield from self._find_unlink(cpu, addr)
            if va is None:
                raise SimulationError(f"vm_unmap_ram of unknown area {addr:#x}")
            # free_unmap_vmap_area()
            yield from self.pt.vunmap_range_noflush(cpu, addr, count * PAGE)
            yield from self._free_vmap_area_noflush(cpu, va)
        self.metrics.latency("vm_unmap_ram", self.env.now - t0)

    def _vb_free(self, cpu: int, addr: int, count: int):
        """vb_free(): clear the bits, clear PTEs, widen the dirty range."""
        order = (count - 1).bit_length()
        need = 1 << order
        offset = (addr & (VMAP_BLOCK_SIZE - 1)) >> PAGE_SHIFT
        vb = self._vb_xa(addr).xa.get(self._vb_idx(addr))  # xa_load(), RCU
        if vb is None:
            raise SimulationError(f"vm_unmap_ram of {addr:#x}: no vmap_block")
        mask = ((1 << need) - 1) << offset
        if vb.used & mask != mask:
            raise SimulationError(f"vm_unmap_ram of {addr:#x}: pages not mapped")
        extra = yield from vb.lock.take(cpu)
        vb.used &= ~mask
        yield self.env.timeout(int(2 * self.visit_ns + extra))
        vb.lock.release(cpu)
        # vunmap_range_noflush(): PTEs only, the TLB entries stay until a
        # flush of the dirty range or of the whole block
        yield from self.pt.vunmap_range_noflush(cpu, addr, count * PAGE)
        extra = yield from vb.lock.take(cpu)
        vb.dirty_min = min(vb.dirty_min, offset)
        vb.dirty_max = max(vb.dirty_max, offset + need)
        vb.dirty += need
        full = vb.dirty == VMAP_BBMAP_BITS
        yield self.env.timeout(int(self.visit_ns + extra))
        vb.lock.release(cpu)
        if full:
            yield from self._free_vmap_block(cpu, vb)

    def _free_vmap_block(self, cpu: int, vb: VmapBlock):
        """free_vmap_block(): xa_erase, unlink from busy, free lazily."""
        xa = self._vb_xa(vb.va.addr)
        extra = yield from xa.xa_lock.take(cpu)
        xa.xa.pop(self._vb_idx(vb.va.addr), None)
        yield self.env.timeout(int(self.visit_ns * 2 + extra))
        xa.xa_lock.release(cpu)
        node = self._addr_node(vb.va.addr)
        extra = yield from node.busy_lock.take(cpu)
        node.busy.pop(vb.va.addr, None)
        self.used_bytes -= vb.va.size
        yield self.env.timeout(
            int(self.visit_ns * rb_depth(len(node.busy) + 1) + extra)
        )
        node.busy_lock.release(cpu)
        self.metrics.inc("vmap.block_frees")
        yield from self._free_vmap_area_noflush(cpu, vb.va)

    def _purge_fragmented_block(
        self, vb: VmapBlock, purge_list: list[VmapBlock], force: bool
    ) -> bool:
        """purge_fragmented_block() (vb->lock held; vbq->lock taken by caller)."""
        if not _fragmented(vb):
            return False
        # don't overeagerly purge usable blocks unless requested
        if not (force or vb.free < VMAP_PURGE_THRESHOLD):
            return False
        vb.free = 0
        vb.dirty = VMAP_BBMAP_BITS
        vb.dirty_min = 0
        vb.dirty_max = VMAP_BBMAP_BITS
        vbq = self._vbq(vb.cpu)
        if vb in vbq.free:
            vbq.free.remove(vb)
        purge_list.append(vb)
        return True

    def _purge_fragmented_blocks_allcpus(self, cpu: int):
        """purge_fragmented_blocks_allcpus(): force-purge on every CPU."""
        purge: list[VmapBlock] = []
        walk = 0.0
        for c in range(self.nr_cpus):
            walk += self.visit_ns  # rcu_read_lock + list head
            vbq = self._vbqs.get(c)
            if vbq is None:
                continue
            for vb in list(vbq.free):
                walk += self.visit_ns
                if not _fragmented(vb):
                    continue
                yield self.env.timeout(int(walk))
                walk = 0.0
                yield from self._hold2(cpu, vb.lock, vbq.lock, self.visit_ns)
                self._purge_fragmented_block(vb, purge, True)
        yield self.env.timeout(int(walk))
        for vb in purge:  # free_purged_blocks()
            yield from self._free_vmap_block(cpu, vb)

    def vm_unmap_aliases(self, cpu: int):
        """vm_unmap_aliases(): flush every lazy alias (called by x86 CPA)."""
        t0 = self.env.now
        yield from self._vm_unmap_aliases(cpu, KVA_END, 0, False)
        self.metrics.latency("vm_unmap_aliases", self.env.now - t0)

    def _vm_unmap_aliases(self, cpu: int, start: int, end: int, flush: bool):
        """_vm_unmap_aliases(): walk every CPU's blocks, purge, flush."""
        self.metrics.inc("vmap.unmap_aliases")
        yield from self.purge_lock.take(cpu)
        purge: list[VmapBlock] = []
        walk = 0.0
        for c in range(self.nr_cpus):  # for_each_possible_cpu
            walk += self.visit_ns  # xa_for_each() on this CPU's xarray
            vbq = self._vbqs.get(c)
            if vbq is None or not vbq.xa:
                continue
            for vb in list(vbq.xa.values()):
                walk += self.visit_ns
                yield self.env.timeout(int(walk))
                walk = 0.0
                extra = yield from vb.lock.take(cpu)
                work = self.visit_ns + extra
                owner = self._vbq(vb.cpu)
                if _fragmented(vb) and vb.free < VMAP_PURGE_THRESHOLD:
                    work += yield from owner.lock.take(cpu)
                    self._purge_fragmented_block(vb, purge, False)
                    yield self.env.timeout(int(work))
                    owner.lock.release(cpu)
                else:
                    if vb.dirty_max and vb.dirty != VMAP_BBMAP_BITS:
                        s = vb.va.addr + (vb.dirty_min << PAGE_SHIFT)
                        e = vb.va.addr + (vb.dirty_max << PAGE_SHIFT)
                        start = min(start, s)
                        end = max(end, e)
                        # prevent that this is flushed again
                        vb.dirty_min = VMAP_BBMAP_BITS
                        vb.dirty_max = 0
                        flush = True
                    yield self.env.timeout(int(work))
                vb.lock.release(cpu)
        yield self.env.timeout(int(walk))
        for vb in purge:
            yield from self._free_vmap_block(cpu, vb)
        purged = yield from self._purge_lazy(cpu, start, end, False)
        if not purged and flush:
            yield self.env.timeout(self._flush(cpu, start, end))
        self.purge_lock.release(cpu)
