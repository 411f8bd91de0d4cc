"""A captured host as the simulated machine's starting state.

The kernel knobs ``buddyinfo``, ``meminfo``, ``vmallocinfo`` and
``vmstat`` name captures of one host (``simcore capture --script`` takes
them all at once). :meth:`HostState.boot` applies them at time zero, in the
order the kernel built that state:

1. ``/proc/buddyinfo`` lays out the free lists (done when the page
   allocator is built, :mod:`simcore.kernel.page_alloc`);
2. ``/proc/meminfo`` ``DirectMap4k/2M/1G``: GB pages on or off as
   ``probe_page_size_mask()`` found them (DirectMap1G present or not), then
   as many GiBs split to 2M leaves and 2 MiB regions split to 4K leaves as
   the host had, spread at random (:meth:`DirectMap.seed_split`). The
   amounts are kept in bytes, not as shares: splits come from permission
   changes of kernel text, modules and BPF images, which do not grow with
   RAM;
3. ``/proc/vmallocinfo``: the areas, their pages and page tables
   (:mod:`simcore.kernel.vmalloc.seed`);
4. ``/proc/vmstat`` ``nr_free_pages``: without a buddyinfo capture, the
   free lists are cut down to that many pages, largest blocks first and
   each node in proportion to its free memory, the rest being in use by
   owners the captures do not name; with one, the two are compared.

Every page this takes comes from :mod:`simcore.kernel.boot_pages`.
:meth:`HostState.describe` is what ``simcore check`` prints; the same
facts go to the kernel log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE_SHIFT, PMD_SIZE, PUD_SIZE
from simcore.errors import CaptureError
from simcore.kernel.buddyinfo import load_buddyinfo
from simcore.kernel.meminfo import MemInfo, load_meminfo
from simcore.kernel.printk import printk
from simcore.kernel.vmallocinfo import load_vmallocinfo
from simcore.kernel.vmstat import VmStat, load_vmstat

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

GIB = 1 << 30


def _gib(nbytes: int) -> str:
    if nbytes < GIB:
        return f"{nbytes / (1 << 20):.1f} MiB"
    return f"{nbytes / GIB:.2f} GiB"


class HostState:
    """What the captures named by the kernel knobs set at time zero."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.notes: dict[str, list[str]] = {}  # capture kind -> summary lines
        self.meminfo: MemInfo | None = None
        self.vmstat: VmStat | None = None

    def boot(self) -> None:
        k, ctx = self.kernel.knobs, self.kernel.ctx
        if k.buddyinfo:
            self._buddyinfo(str(ctx.capture(k.buddyinfo)))
        if k.meminfo:
            self._meminfo(load_meminfo(ctx.capture(k.meminfo)))
        if k.vmallocinfo:
            path = ctx.capture(k.vmallocinfo)
            self.kernel.vmalloc.seed_vmallocinfo(load_vmallocinfo(path), file=str(path))
        if k.vmstat:
            self._vmstat(load_vmstat(ctx.capture(k.vmstat)))
        self.kernel.page_alloc._publish()

    # -- the captures ------------------------------------------------------------
    def _buddyinfo(self, file: str) -> None:
        info = load_buddyinfo(file)
        free = sum(info.free_pages(n) for n in info.nodes())
        self.notes["buddyinfo"] = [
            f"buddyinfo {file}:",
            f"  free lists as captured: {len(info.nodes())} node(s), "
            f"{_gib(free << PAGE_SHIFT)} free",
        ]

    def _meminfo(self, info: MemInfo) -> None:
        kernel = self.kernel
        dm = kernel.pagetables.direct
        ram = kernel.page_alloc.buddy.total_pages << PAGE_SHIFT
        out = [
            f"meminfo {info.file}:",
            f"  MemTotal {_gib(info.get('MemTotal') or 0)} (simulated RAM {_gib(ram)})",
        ]
        self.meminfo = info
        split = info.direct_map()
        if split is None:
            out.append("  no DirectMap lines: the direct map keeps its boot layout")
            self.notes["meminfo"] = out
            return
        b4, b2, b1 = split
        dm.set_gbpages(b1 > 0)
        nr_4k = round(b4 / PMD_SIZE)
        # GiBs that held the host's 2M leaves and its split 2M regions,
        # beyond the partial last GiB, which boot maps with 2M/4K already
        tail = (dm.nr_pages << PAGE_SHIFT) - dm.full_gb * PUD_SIZE
        nr_gb = (
            -(-max(0, nr_4k * PMD_SIZE + b2 - tail) // PUD_SIZE) if dm.gbpages else 0
        )
        got_gb, got_4k = dm.seed_split(
            nr_gb,
            nr_4k,
            kernel.rng("kernel.directmap.meminfo"),
            kernel.page_alloc.boot.table_page,
        )
        s4, s2, s1 = dm.bytes()
        out += [
            "  direct map    DirectMap4k  DirectMap2M  DirectMap1G",
            f"    captured  {_gib(b4):>13}{_gib(b2):>13}{_gib(b1):>13}",
            f"    simulated {_gib(s4):>13}{_gib(s2):>13}{_gib(s1):>13}",
            f"  GB pages {'on' if dm.gbpages else 'off'}; {got_gb} GiB and "
            f"{got_4k} 2 MiB regions split, placed at random",
        ]
        printk(
            kernel.ctx,
            f"meminfo: {info.file}: direct map DirectMap4k {s4 >> 10} kB, "
            f"DirectMap2M {s2 >> 10} kB, DirectMap1G {s1 >> 10} kB at boot",
        )
        if got_gb < nr_gb or got_4k < nr_4k:
            out.append("  (capped: the simulated machine has less RAM than the host)")
        self.notes["meminfo"] = out

    def _vmstat(self, info: VmStat) -> None:
        kernel = self.kernel
        buddy = kernel.page_alloc.buddy
        target = info.get("nr_free_pages") or 0
        out = [f"vmstat {info.file}:"]
        if kernel.knobs.buddyinfo:
            out.append(
                f"  nr_free_pages {target:,}; free lists from buddyinfo: "
                f"{buddy.nr_free_pages:,}"
            )
        else:
            have = buddy.nr_free_pages
            if target > have:
                need = (buddy.total_pages - have + target) << PAGE_SHIFT
                raise CaptureError(
                    f"nr_free_pages {target} ({_gib(target << PAGE_SHIFT)}) is "
                    f"more than the simulated machine has free after seeding "
                    f"({_gib(have << PAGE_SHIFT)})",
                    file=info.file,
                    line=info.lines.get("nr_free_pages"),
                    expected=f"machine.memory.dram_bytes of at least {need}",
                )
            excess = left = have - target
            last = len(buddy.zones) - 1
            for i, zone in enumerate(buddy.zones):
                share = left if i == last else excess * zone.free_pages() // have
                left -= buddy.reserve_free(zone.node, share)
            out.append(
                f"  nr_free_pages {target:,}: {excess:,} more pages in use "
                f"from the start ({_gib(excess << PAGE_SHIFT)})"
            )
        printk(
            kernel.ctx, f"vmstat: {info.file}: {buddy.nr_free_pages} pages free at boot"
        )
        self.vmstat = info
        self.notes["vmstat"] = out

    def _compared(self) -> list[str]:
        """The host's own counters beside what the model seeded."""
        out = []
        vmalloc = sum(
            s.kinds.get("vmalloc", (0, 0, 0))[2] for s in self.kernel.vmalloc.seeded
        )
        used = self.meminfo.get("VmallocUsed") if self.meminfo else None
        if used is not None and self.kernel.vmalloc.seeded:
            out.append(
                f"  VmallocUsed {used >> PAGE_SHIFT:,} pages; vmalloc areas "
                f"seeded with {vmalloc:,}"
            )
        if self.vmstat is not None:
            tables = self.kernel.metrics.counters.get("mem.pagetable_pages", 0)
            for name, ours in (
                ("nr_page_table_pages", f"{tables:,} kernel tables modelled"),
                ("direct_map_level2_splits", "the run counts its own from 0"),
                ("direct_map_level3_splits", "the run counts its own from 0"),
            ):
                if self.vmstat.get(name) is not None:
                    out.append(f"  {name} {self.vmstat.get(name):,} ({ours})")
        return ["host counters beside the model:", *out] if out else []

    # -- report ----------------------------------------------------------------------
    def describe(self) -> list[str]:
        """What the captures set, for ``simcore check`` (at most 78
        columns, which the "# " it prints before each line fills to 80)."""
        out: list[str] = []
        for kind in ("buddyinfo", "meminfo"):
            out += self.notes.get(kind, [])
        for seed in self.kernel.vmalloc.seeded:
            out += seed.lines()
        out += self.notes.get("vmstat", [])
        out += self._compared()
        if out:
            pa = self.kernel.page_alloc
            b = pa.buddy
            out += [
                f"page allocator: {_gib(b.nr_free_pages << PAGE_SHIFT)} free of "
                f"{_gib(b.total_pages << PAGE_SHIFT)}",
                f"  seeded state took {pa.boot.taken():,} pages, "
                f"{pa.boot.from_used:,} of them of the memory in use",
            ]
        return out
