"""mm/vmalloc.c readers: vread_iter() and /proc/vmallocinfo.

Kernel functions modelled: ``vread_iter()`` (/proc/kcore) with
``find_vmap_area_exceed_addr_lock()``, ``aligned_vread_iter()``,
``vmap_ram_vread_iter()``, ``zero_iter()``; /proc/vmallocinfo via
``vmalloc_info_show()`` + ``show_purge_info()`` (per-node era) or the
``s_start()``/``s_show()``/``s_stop()`` iterator (global era), both under
fs/seq_file.c ``seq_read_iter()``. Seeding from a captured
/proc/vmallocinfo is in :mod:`.seed`.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, NamedTuple

from simcore.constants import PAGE, PAGE_SHIFT
from simcore.kernel.vmalloc.area import (
    VM_ALLOC,
    VM_DMA_COHERENT,
    VM_IOREMAP,
    VM_MAP,
    VM_NO_GUARD,
    VM_SPARSE,
    VM_USERMAP,
    VMAP_BLOCK,
    VMAP_RAM,
    VmArea,
)
from simcore.kernel.vmalloc.vmap_area import rb_depth
from simcore.kernel.vmallocinfo import (
    unpurged_line,
    vm_line,
    vm_map_ram_line,
)

if TYPE_CHECKING:
    from simcore.kernel.vmalloc.vmap_block import VmapBlock


# --- readers ------------------------------------------------------------------
# vmalloc_info_show() / s_show(): the word printed for each vm_struct flag.
_FLAG_OF_WORD = {
    "ioremap": VM_IOREMAP,
    "sparse": VM_SPARSE,
    "vmalloc": VM_ALLOC,
    "vmap": VM_MAP,
    "user": VM_USERMAP,
    "dma-coherent": VM_DMA_COHERENT,
}
# fs/seq_file.c: the seq buffer starts at PAGE_SIZE and doubles on overflow.
SEQ_BUF_BYTES = PAGE
# Estimate: one /proc/vmallocinfo line is a seq_printf() with %pK twice and
# %pS (kallsyms lookup: a binary search over ~10^5 symbols plus name
# decompression) and a few integers, about 2,000 cycles at 2.5 GHz.
SEQ_LINE_NS = 800
# Estimate: copy_page_to_iter_nofault() reads and writes each line where
# zeroing (kernel_costs.page_zero_ns) only writes it, so a copied page costs
# about twice a zeroed one.
COPY_PAGE_FACTOR = 2
# vmalloc_to_page() on 4-level paging: pgd, pud, pmd and pte entries, one
# dependent load each (the p4d level is folded).
PAGE_WALK_LOADS = 4


class VreadResult(NamedTuple):
    count: int  # bytes the read advanced
    copied: int  # bytes copied from mapped pages
    zeroed: int  # bytes zero-filled (holes, guard pages, unmapped parts)
    areas: int  # areas visited


class VreadMixin:
    """vread_iter() and /proc/vmallocinfo.

    Part of :class:`simcore.kernel.vmalloc.core.Vmalloc`, whose
    ``__init__`` sets the state these methods use.
    """

    def _range_of(self, addr: int) -> str:
        for name, (lo, hi) in self.ranges.items():
            if lo <= addr < hi:
                return name
        return "other"

    # -- readers -------------------------------------------------------------------
    def _all_busy(self) -> list[VmArea]:
        areas = [a for vn in self.nodes for a in vn.busy.values()]
        areas.sort(key=lambda a: a.addr)
        return areas

    def _block_of(self, area: VmArea) -> VmapBlock | None:
        if not area.va_flags & VMAP_BLOCK:
            return None
        return self._vb_xa(area.addr).xa.get(self._vb_idx(area.addr))

    def _mapped_runs(self, area: VmArea) -> list[tuple[int, int]] | None:
        """The [start, end) parts of ``area`` that vread_iter() copies.

        None: the area is skipped (no vm_struct and no VMAP_RAM flag).
        """
        if area.va_flags & VMAP_RAM:
            if not self.kernel.knobs.vread_vm_map_ram:
                return None  # before v6.3 vread skipped areas without a vm
            vb = self._block_of(area)
            if vb is None:
                return [(area.addr, area.end)]
            runs = []
            bits = vb.used
            off = 0
            while bits:
                low = (bits & -bits).bit_length() - 1
                bits >>= low
                off += low
                width = (~bits & (bits + 1)).bit_length() - 1
                runs.append(
                    (
                        area.addr + (off << PAGE_SHIFT),
                        area.addr + ((off + width) << PAGE_SHIFT),
                    )
                )
                bits >>= width
                off += width
            return runs
        if not area.has_vm:
            return None
        if area.flags & (VM_IOREMAP | VM_SPARSE):
            return []  # treated as a memory hole
        size = area.size - (0 if area.flags & VM_NO_GUARD else PAGE)
        return [(area.addr, area.addr + size)]

    def _copy_ns(self, nbytes: int) -> float:
        # aligned_vread_iter(): vmalloc_to_page() then a copy, per page
        return nbytes / PAGE * (self.copy_page_ns + self.walk_ns)

    def _memcpy_ns(self, nbytes: int) -> float:
        # zero_iter() (a copy of ZERO_PAGE) or a copy of the seq buffer
        return nbytes / PAGE * self.copy_page_ns

    def vread(self, cpu: int, addr: int, count: int):
        """vread_iter(): copy [addr, addr + count) as /proc/kcore reads it.

        Holes, guard pages, ioremap/sparse areas and the unused parts of
        vm_map_ram blocks are zero-filled. Areas are taken from a snapshot of
        the busy trees at the start and skipped if freed meanwhile.
        """
        t0 = self.env.now
        end = addr + count
        copied = zeroed = visited = 0
        cur = addr
        if not self.per_node:
            # one vmap_area_lock section for the whole read
            extra = yield from self.nodes[0].busy_lock.take(cpu)
            areas = self._all_busy()
            i = bisect.bisect_right([a.end for a in areas], addr)
            ns = self.visit_ns * rb_depth(len(areas)) + extra
            while i < len(areas) and cur < end:
                a = areas[i]
                i += 1
                if a.addr >= end:
                    break
                visited += 1
                c, z, cur = self._read_area(a, cur, end)
                copied += c
                zeroed += z
                ns += self.visit_ns + self._copy_ns(c) + self._memcpy_ns(z)
            yield self.env.timeout(int(ns))
            self.nodes[0].busy_lock.release(cpu)
        else:
            areas = self._all_busy()
            i = bisect.bisect_right([a.end for a in areas], addr)
            while i < len(areas) and cur < end:
                a = areas[i]
                i += 1
                if a.addr >= end:
                    break
                vn = self._addr_node(a.addr)
                if vn.busy.get(a.addr) is not a:
                    continue  # freed since the snapshot
                # find_vmap_area_exceed_addr_lock(): every node's lock in turn
                yield from self._scan_nodes(cpu)
                extra = yield from vn.busy_lock.take(cpu)
                ns = self.visit_ns * rb_depth(len(vn.busy)) + extra
                visited += 1
                vb = self._block_of(a)
                if vb is not None:
                    ns += yield from vb.lock.take(cpu)
                c, z, cur = self._read_area(a, cur, end)
                copied += c
                zeroed += z
                ns += self._copy_ns(c) + self._memcpy_ns(z)
                yield self.env.timeout(int(ns))
                if vb is not None:
                    vb.lock.release(cpu)
                vn.busy_lock.release(cpu)
        if cur < end:
            zeroed += end - cur
            yield self.env.timeout(int(self._memcpy_ns(end - cur)))
        self.metrics.inc("vread.bytes_copied", copied)
        self.metrics.inc("vread.bytes_zeroed", zeroed)
        self.metrics.latency("vread", self.env.now - t0)
        return VreadResult(count, copied, zeroed, visited)

    def _read_area(self, a: VmArea, cur: int, end: int) -> tuple[int, int, int]:
        """Bytes copied and zeroed from ``cur`` through ``a``; the new cursor."""
        copied = zeroed = 0
        stop = min(end, a.end)
        if cur < a.addr:
            zeroed += min(a.addr, end) - cur
            cur = min(a.addr, end)
        if cur >= stop:
            return copied, zeroed, cur
        runs = self._mapped_runs(a)
        for s, e in runs or ():
            s, e = max(s, cur), min(e, stop)
            if s < e:
                copied += e - s
        zeroed += (stop - cur) - copied
        return copied, zeroed, stop

    def _scan_nodes(self, cpu: int):
        """One lookup in each node's busy tree under its lock, in turn.

        Uncontended sections are marked held at the instant they are taken
        and their time is charged in one timeout after the scan (hold time
        still booked to the lock); a contended lock is waited for.
        """
        acc = 0.0
        for vn in self.nodes:
            ns = self.visit_ns * rb_depth(len(vn.busy))
            ev = vn.busy_lock.acquire(cpu)
            if ev is not None:
                if acc:
                    yield self.env.timeout(int(acc))
                    acc = 0.0
                yield ev
                yield self.env.timeout(int(ns))
                vn.busy_lock.release(cpu)
                continue
            vn.busy_lock.release(cpu)
            vn.busy_lock.stats.hold_ns += int(ns + self.uncontended_ns)
            acc += ns + self.uncontended_ns
        if acc:
            yield self.env.timeout(int(acc))

    def _info_line(self, a: VmArea) -> str:
        """The line vmalloc_info_show()/s_show() prints for a busy area."""
        if not a.has_vm:
            return vm_map_ram_line(a.addr, a.end) if a.va_flags & VMAP_RAM else ""
        words = {w for w, f in _FLAG_OF_WORD.items() if a.flags & f}
        if a.nr_pages * 8 > PAGE:  # pages[] itself was vmalloc'ed
            words.add("vpages")
        return vm_line(
            a.addr,
            a.end,
            caller=a.caller,
            pages=a.nr_pages,
            phys=a.phys,
            flags=words,
            numa=a.numa,
        )

    def _line_cost(self, a: VmArea, printed: bool) -> float:
        # show_numa_info() walks pages[] even when the buffer has overflowed
        numa = a.nr_pages * self.numa_page_ns if a.numa or a.has_vm else 0.0
        return (SEQ_LINE_NS if printed else self.visit_ns) + numa

    def vmallocinfo(self, cpu: int):
        """Read /proc/vmallocinfo to the end; returns its lines.

        Per-node era: single_open() + vmalloc_info_show(): every node's
        busy.lock in turn while printing that node's list, then each lazy.lock
        for the "unpurged vm_area" lines; seq_read_iter() re-runs the whole
        show with a doubled buffer until the output fits. Global era: the
        s_start()/s_show()/s_stop() iterator takes vmap_purge_lock and
        vmap_area_lock for each PAGE_SIZE buffer, finding its restart
        position by walking the list from the head.
        """
        t0 = self.env.now
        if self.per_node:
            lines = yield from self._vmallocinfo_nodes(cpu)
        else:
            lines = yield from self._vmallocinfo_global(cpu)
        self.metrics.latency("vmallocinfo", self.env.now - t0)
        return lines

    def _vmallocinfo_nodes(self, cpu: int):
        per_node = []
        for vn in self.nodes:
            busy = sorted(vn.busy.values(), key=lambda a: a.addr)
            per_node.append([(a, self._info_line(a)) for a in busy])
        lazy = [[unpurged_line(a.addr, a.end) for a in vn.lazy] for vn in self.nodes]
        total = sum(len(t) + 1 for node in per_node for _, t in node if t)
        total += sum(len(t) + 1 for node in lazy for t in node)
        bufs = [SEQ_BUF_BYTES]
        while bufs[-1] <= total:
            bufs.append(bufs[-1] << 1)
        for buf in bufs:  # each overflow re-runs the whole show()
            written = 0
            for vn, entries in zip(self.nodes, per_node, strict=True):
                ns = 0.0
                for a, text in entries:
                    fits = bool(text) and written + len(text) + 1 < buf
                    if fits:
                        written += len(text) + 1
                    elif text:
                        written = buf
                    ns += self._line_cost(a, fits)
                yield from vn.busy_lock.hold(cpu, ns)
            for vn, texts in zip(self.nodes, lazy, strict=True):
                if not texts:
                    continue
                ns = 0.0
                for text in texts:
                    fits = written + len(text) + 1 < buf
                    written = written + len(text) + 1 if fits else buf
                    ns += SEQ_LINE_NS if fits else self.visit_ns
                yield from vn.lazy_lock.hold(cpu, ns)
        yield self.env.timeout(int(self._memcpy_ns(total)))  # copy_to_iter()
        out = [t for node in per_node for _, t in node if t]
        out.extend(t for node in lazy for t in node)
        return out

    def _vmallocinfo_global(self, cpu: int):
        busy = self._all_busy()
        texts = [self._info_line(a) for a in busy]
        unpurged = [unpurged_line(s, e) for s, e in self.lazy_tree.blocks()]
        out: list[str] = []
        pos = 0
        n = len(busy)
        while pos < n:
            # s_start(): both locks, then seq_list_start() from the head
            yield from self.purge_lock.take(cpu)
            extra = yield from self.nodes[0].busy_lock.take(cpu)
            ns = pos * self.visit_ns + extra
            used = 0
            while pos < n:
                text = texts[pos]
                if used and used + len(text) + 1 >= SEQ_BUF_BYTES:
                    break
                used += len(text) + 1 if text else 0
                ns += self._line_cost(busy[pos], bool(text))
                if text:
                    out.append(text)
                pos += 1
            yield self.env.timeout(int(ns))
            if pos == n and unpurged:
                # show_purge_info() from the last s_show(), nested
                yield from self.purge_area_lock.hold(cpu, len(unpurged) * SEQ_LINE_NS)
                out.extend(unpurged)
                used += sum(len(t) + 1 for t in unpurged)
            self.nodes[0].busy_lock.release(cpu)
            self.purge_lock.release(cpu)
            yield self.env.timeout(int(self._memcpy_ns(used)))  # copy to user
        return out
