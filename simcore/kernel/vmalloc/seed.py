"""mm/vmalloc.c at time zero: a captured /proc/vmallocinfo as the state the
run starts from.

Each area of the capture is placed on the simulated layout
(:mod:`simcore.kernel.vmallocinfo_layout`: x86-64 with or without KASLR,
arm64), carved out of the free tree as ``pcpu_get_vm_areas()`` does
(``pvm_find_va_enclose_addr()`` + ``va_clip()``) and made busy, or lazily
freed for an "unpurged vm_area" line, and given what it held on the host,
by the kind the capture prints:

- ``vmalloc`` (``VM_ALLOC``, ``pages=N``): N pages from the page allocator
  (:mod:`simcore.kernel.boot_pages`), spread over the NUMA nodes as its
  ``N<node>=<pages>`` fields say, mapped 4 KiB each from the area's start.
  The capture does not print ``vm->page_order``: an area whose start and
  page count are whole 2 MiB (as ``vmalloc_huge()`` lays them out, and a
  page-aligned ``vmalloc()`` only by a 1-in-512 chance) is taken as mapped
  with PMD leaves, on 2 MiB blocks, falling back to 4 KiB pages as
  ``__vmalloc_node_range()`` does when none is left. Without ``pages=``
  (percpu chunks, a bare ``get_vm_area()``) it holds address space only;
- ``vmap``, ``dma-coherent``: the caller's pages, in use, mapped over the
  whole area but its guard page;
- ``vm_map_ram``: the caller's pages over the whole area (no guard page);
  for a ``vmap_block`` the capture does not say which of its pages are
  mapped, and all are taken as mapped (an upper bound);
- ``ioremap``, and any other area printed with ``phys=``
  (``vm->phys_addr``: arm64's kernel image segments, added by
  ``vm_area_add_early()``): that range mapped (2 MiB leaves where virtual
  and physical addresses allow, as ``ioremap_page_range()`` does on x86),
  page-table pages but no pages of the page allocator;
- ``sparse`` (BPF arena): address space only, its pages are mapped on fault;
- ``unpurged vm_area``: address space and the page tables its mapping left
  (``vunmap_range_noflush()`` never frees them), no pages.

Nothing is charged: the capture is the state at time zero. What was
seeded, and what could not be placed, is kept in :class:`VmallocSeed`
(``simcore check`` prints it) and logged to the kernel log.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from simcore.constants import PAGE, PAGE_SHIFT, PAGES_PER_PMD, PMD_ORDER, PMD_SHIFT
from simcore.errors import CaptureError
from simcore.kernel.printk import printk
from simcore.kernel.vmalloc.area import VMAP_RAM, VmArea
from simcore.kernel.vmalloc.vread import _FLAG_OF_WORD
from simcore.kernel.vmallocinfo import VmallocInfoEntry
from simcore.kernel.vmallocinfo_layout import (
    CapturedLayout,
    Placed,
    detect_layout,
    place,
)

# Kinds by what backs them: RAM pages of their own (vm->pages), the
# caller's RAM pages, a device range, or nothing but address space.
_CALLER_PAGES = ("vmap", "dma-coherent", "vm_map_ram")


@dataclass
class VmallocSeed:
    """What one /proc/vmallocinfo capture put on the simulated machine."""

    file: str
    layout: CapturedLayout
    slides: dict[str, int]
    areas: int
    placed: int = 0
    # reason -> (areas, capture line of the first one)
    unplaced: dict[str, list[int]] = field(default_factory=dict)
    # kind -> [areas, bytes of address space, RAM pages]
    kinds: dict[str, list[int]] = field(default_factory=dict)
    # range -> [lowest start, highest end] of its placed areas, as captured
    spans: dict[str, list[int]] = field(default_factory=dict)
    pages: int = 0  # RAM pages taken
    tables: int = 0  # page-table pages added
    huge: int = 0  # areas mapped with 2 MiB leaves

    @property
    def nr_unplaced(self) -> int:
        return sum(n for n, _ in self.unplaced.values())

    def lines(self) -> list[str]:
        """The summary ``simcore check`` prints, at most 80 columns."""
        out = [f"vmallocinfo {self.file}:"]
        out += textwrap.wrap(
            self.layout.description,
            78,
            initial_indent="  layout: ",
            subsequent_indent="    ",
            break_on_hyphens=False,
        )
        out.append(
            f"  areas: {self.areas}, placed {self.placed}, unplaced {self.nr_unplaced}"
        )
        for reason, (n, line) in sorted(self.unplaced.items()):
            out.append(f"    not placed: {n} {reason} (first at line {line})")
        for name, (lo, hi) in sorted(self.spans.items()):
            slide = self.slides.get(name, 0)
            out.append(f"  {name}: {lo:#x}-{hi:#x}")
            out.append(
                "    kept in place"
                if not slide
                else f"    moved to {lo + slide:#x} (slide "
                f"{'-' if slide < 0 else '+'}{abs(slide):#x})"
            )
        out.append(f"  {'kind':<13}{'areas':>7}{'bytes':>16}{'pages':>10}")
        for kind, (n, size, pages) in sorted(self.kinds.items()):
            out.append(f"  {kind:<13}{n:>7}{size:>16,}{pages:>10,}")
        out.append(
            f"  RAM pages {self.pages:,}, page-table pages {self.tables:,}"
            + (f", on 2 MiB leaves: {self.huge}" if self.huge else "")
        )
        return out


class SeedMixin:
    """Seeding of a captured /proc/vmallocinfo.

    Part of :class:`simcore.kernel.vmalloc.core.Vmalloc`, whose
    ``__init__`` sets the state these methods use.
    """

    def seed_vmallocinfo(
        self, entries: list[VmallocInfoEntry], *, file: str = "<vmallocinfo>"
    ) -> VmallocSeed:
        """Make the captured areas busy (or lazily freed) before the run,
        with their pages and page tables; see the module doc."""
        layout = detect_layout(entries, file=file)
        placement = place(entries, layout, self.ranges)
        if entries and not placement.placed:
            e, reason = placement.unplaced[0]
            raise CaptureError(
                f"none of the {len(entries)} areas can be placed: the first, "
                f"{e.start:#x}, is {reason}",
                file=file,
                line=e.line,
                expected="a capture of this machine's /proc/vmallocinfo, taken "
                "with `sudo cat /proc/vmallocinfo` and kernel.kptr_restrict=1",
            )
        seed = VmallocSeed(file, layout, placement.slides, len(entries))
        for e, reason in placement.unplaced:
            seed.unplaced.setdefault(reason, [0, e.line])[0] += 1
        boot = self.page_alloc.boot
        for p in placement.placed:
            self._seed_one(p, file, seed, boot)
        self.seeded.append(seed)
        printk(
            self.kernel.ctx,
            f"vmallocinfo: {file}: {seed.placed} of {seed.areas} areas seeded "
            f"({layout.description}), {seed.pages} pages, {seed.tables} "
            "page-table pages",
        )
        return seed

    def _seed_one(self, p: Placed, file: str, seed: VmallocSeed, boot) -> None:
        e, start = p.entry, p.start
        try:
            self.kva.reserve(start, e.size)
        except ValueError:
            raise CaptureError(
                f"area {e.start:#x}-{e.end:#x} overlaps an earlier line",
                file=file,
                line=e.line,
                expected="non-overlapping areas, as the kernel prints them",
            ) from None
        kind = e.label
        seed.placed += 1
        span = seed.spans.setdefault(p.range, [e.start, e.end])
        span[0], span[1] = min(span[0], e.start), max(span[1], e.end)
        stats = seed.kinds.setdefault(kind, [0, 0, 0])
        stats[0] += 1
        stats[1] += e.size
        take = boot.table_page
        if kind == "unpurged":
            area = VmArea(start, e.size, 0, -1, 0, p.range, has_vm=False)
            seed.tables += self.pt.map_at_boot(start, e.size, None, take)
            self.lazy_nr += e.size >> PAGE_SHIFT
            if self.per_node:
                self._addr_node(start).lazy.append(area)
            else:
                self.lazy_tree.free(start, e.size)
            return
        mapped = e.size if kind == "vm_map_ram" else e.size - PAGE
        huge = False
        own: list[int] = []
        fixed = e.phys is not None and kind != "vmalloc"
        if fixed:
            # vm->phys_addr: a device range, or memory outside the page
            # allocator (arm64's kernel image segments)
            first = e.phys >> PAGE_SHIFT
            pfns = range(first, first + (mapped >> PAGE_SHIFT))
            huge = True
        elif kind in _CALLER_PAGES:
            pfns = self._seed_pages(e, e.pages or mapped >> PAGE_SHIFT, boot, file)
        elif e.pages and kind != "sparse":
            own, huge = self._seed_own_pages(e, start, boot, file)
            pfns = own
        else:
            pfns = []  # address space only
        stats[2] += 0 if fixed else len(pfns)
        seed.pages += 0 if fixed else len(pfns)
        if pfns:
            seed.tables += self.pt.map_at_boot(start, 0, pfns, take, huge=huge)
        if kind == "vm_map_ram":
            area = VmArea(
                start,
                e.size,
                e.size >> PAGE_SHIFT,
                -1,
                0,
                p.range,
                va_flags=VMAP_RAM,
                has_vm=False,
            )
        else:
            flags = 0
            for w in e.flags:
                flags |= _FLAG_OF_WORD.get(w, 0)
            area = VmArea(
                start,
                e.size,
                e.pages,
                -1,
                flags,
                p.range,
                caller=e.caller,
                phys=e.phys,
                numa=e.numa,
                pages=own,
                page_shift=PMD_SHIFT if own and huge else PAGE_SHIFT,
            )
            seed.huge += bool(own and huge)
        self._addr_node(start).busy[start] = area
        self.used_bytes += e.size

    def _seed_pages(self, e: VmallocInfoEntry, nr: int, boot, file: str) -> list[int]:
        """``nr`` pages placed on the nodes the capture's N<node>= fields
        name (node 0 for what they leave out)."""
        out: list[int] = []
        for node, count in e.numa:
            out += boot.pages(node, min(count, nr - len(out)))
        if len(out) < nr:
            out += boot.pages(0, nr - len(out))
        if len(out) < nr:
            raise CaptureError(
                f"no memory left for the {nr} pages of area {e.start:#x}: the "
                "captured areas need more than the simulated machine has",
                file=file,
                line=e.line,
                expected="machine.memory.dram_bytes at least the host's",
            )
        return out

    def _seed_own_pages(
        self, e: VmallocInfoEntry, start: int, boot, file: str
    ) -> tuple[list[int], bool]:
        """vm->pages of a vmalloc'ed area, on 2 MiB blocks when its layout
        says vmalloc_huge(); (pfns, huge)."""
        nr = e.pages
        if (
            start % (1 << PMD_SHIFT) == 0
            and nr % PAGES_PER_PMD == 0
            and e.size == nr * PAGE + PAGE
        ):
            blocks: list[int] = []
            nodes = [n for n, c in e.numa for _ in range(c // PAGES_PER_PMD)]
            for i in range(nr // PAGES_PER_PMD):
                got = boot.block(nodes[i] if i < len(nodes) else 0, PMD_ORDER)
                if got is None:
                    break
                blocks += got
            else:
                return blocks, True
            # __vmalloc_node_range(): no 2 MiB block, retry with 4 KiB pages
            # (the blocks taken stay with the area, split as it keeps them)
            return blocks + self._seed_pages(e, nr - len(blocks), boot, file), False
        return self._seed_pages(e, nr, boot, file), False
