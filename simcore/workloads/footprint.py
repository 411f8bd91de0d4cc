"""The rest of a host's code and data, as page touches for the TLBs.

Published gains of huge-page text (bpf_prog_pack, execmem) were measured
on hosts running other code, whose own text and data compete for the same
iTLB, dTLB and STLB entries. A :class:`Footprint` describes that code: a
CPU runs ``ipc`` x clock instructions per ns, a ``kernel_share`` of them in
the core kernel. Code touches a new page every ``1000 / i_pages_per_kinsn``
instructions, data every ``1000 / d_pages_per_kinsn``; which page is drawn
from a bounded continuous Zipf(``zipf``) over the footprint, hottest pages
first:

- user text at 0x555555554000 (4K pages, or 2M with ``user_text_huge``,
  as with CONFIG_READ_ONLY_THP_FOR_FS or a hugetlbfs-remapped binary);
- user data at 0x7f0000000000 (4K pages, or 2M with ``user_data_huge``:
  THP);
- core kernel text at the layout's kernel image, mapped with 2M pages
  (Documentation/arch/x86/x86_64/mm.rst);
- kernel data in the direct map, at the size the direct map currently
  has there (so CPA splits show up as more, smaller pages).

Used twice: as the host activity every run has (:mod:`simcore.workloads.host`)
and by the ``background`` generator that varies it on chosen CPUs.

Presets (every figure an estimate, no published per-page profile of these
jobs was found):

- ``syscall``: a small program in a loop of system calls, the driver of
  most published BPF and vmalloc measurements (a benchmark loop, perf's
  own workload): about 256 KiB of hot user text, a few MiB of data, half
  of the time in the kernel's entry, syscall and VFS paths (~2 MiB of hot
  kernel text);
- ``compile``: a C++ compile job: cc1plus has about 25 MiB of text, a
  large heap, ~15 % of the time in the kernel (page faults, file reads);
- ``webserver``: a small server binary, most of the time in the network
  stack (~60 % kernel), larger kernel text and data footprints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from simcore.hw.zipf_touch import ZipfParts
from simcore.strict import Strict
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

USER_TEXT = 0x555555554000
USER_DATA = 0x7F0000000000
# The kernel image: __START_KERNEL_map + CONFIG_PHYSICAL_START (16 MiB) on
# x86-64 (Documentation/arch/x86/x86_64/mm.rst); on arm64 KIMAGE_VADDR
# (the layout's kimage_vaddr, MODULES_END in arch/arm64/include/asm/memory.h).
X86_KERNEL_TEXT = 0xFFFFFFFF81000000
M = 1 << 20
K = 1 << 10

PRESETS: dict[str, dict[str, float]] = {
    "syscall": {
        "user_text": 256 * K,
        "user_data": 4 * M,
        "kernel_text": 2 * M,
        "kernel_data": 16 * M,
        "kernel_share": 0.5,
    },
    "compile": {
        "user_text": 24 * M,
        "user_data": 256 * M,
        "kernel_text": 4 * M,
        "kernel_data": 64 * M,
        "kernel_share": 0.15,
    },
    "webserver": {
        "user_text": 2 * M,
        "user_data": 64 * M,
        "kernel_text": 8 * M,
        "kernel_data": 256 * M,
        "kernel_share": 0.6,
    },
}
Preset = Literal["syscall", "compile", "webserver"]

# whose touches a footprint makes, for the attributed TLB metrics
OWNER_NAMES = ("user", "kernel")
_USER, _KERNEL = 0, 1


class Footprint(Strict):
    """Sizes and touch rates of a host's code and data (see the module)."""

    preset: Preset = "syscall"
    user_text: Size | None = Field(default=None, gt=0)
    user_data: Size | None = Field(default=None, gt=0)
    kernel_text: Size | None = Field(default=None, gt=0)
    kernel_data: Size | None = Field(default=None, gt=0)
    kernel_share: float | None = Field(default=None, ge=0, le=1)
    user_text_huge: bool = False
    user_data_huge: bool = False
    ipc: float = Field(default=1.0, gt=0, le=8, description="instructions per cycle")
    i_pages_per_kinsn: float = Field(default=10.0, gt=0, le=1000)
    d_pages_per_kinsn: float = Field(default=20.0, gt=0, le=1000)
    zipf: float = Field(default=1.0, gt=0, le=5)

    @model_validator(mode="after")
    def _fill(self) -> Footprint:
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self


def kernel_text_base(layout) -> int:
    """Where the core kernel's text starts on ``layout``."""
    return layout.kimage_vaddr if layout.arch == "arm64" else X86_KERNEL_TEXT


def _pages(base: int, size: int, shift: int) -> np.ndarray:
    n = max(1, -(-size // (1 << shift)))
    return np.uint64(base) + (np.arange(n, dtype=np.uint64) << np.uint64(shift))


class Touches:
    """Draws a footprint's page touches for a number of instructions."""

    def __init__(self, cfg: Footprint, kernel: Kernel, tag: str) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = tag
        k = cfg.kernel_share
        ui, ud = 12 + 9 * cfg.user_text_huge, 12 + 9 * cfg.user_data_huge
        # (pages, shift, touches per 1000 instructions, side, owner)
        self.parts = [
            (_pages(USER_TEXT, cfg.user_text, ui), ui, (1 - k) * cfg.i_pages_per_kinsn)
            + ("i", _USER),
            (_pages(kernel_text_base(kernel.layout), cfg.kernel_text, 21), 21)
            + (k * cfg.i_pages_per_kinsn, "i", _KERNEL),
            (_pages(USER_DATA, cfg.user_data, ud), ud, (1 - k) * cfg.d_pages_per_kinsn)
            + ("d", _USER),
        ]
        # kernel data: whole 2M regions of the direct map at random places
        # (slab and page-cache pages spread over all memory), so the
        # direct map's page size is looked up once per region
        rng = kernel.rng(tag + ".kernel_data")
        regions = max(1, -(-cfg.kernel_data // (2 * M)))
        ram_regions = kernel.profile.memory.dram_bytes.value // (2 * M)
        picked = np.unique(rng.integers(ram_regions, size=regions)).astype(np.uint64)
        self.kregions = np.uint64(kernel.layout.page_offset) + (picked << np.uint64(21))
        per = np.arange(512, dtype=np.uint64) << np.uint64(12)
        self.kdata = (self.kregions[:, None] + per[None, :]).ravel()
        self.kdata_per_kinsn = k * cfg.d_pages_per_kinsn
        self.kdata_shifts: np.ndarray | None = None
        self._splits = -1
        self._walk_memo: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._zp: ZipfParts | None = None
        self._zp_splits = -1

    def counts(self, insns: float) -> tuple[list[int], int]:
        """Touches of each part, and of kernel data, in ``insns`` instructions."""
        per = [int(insns * p[2] / 1000) for p in self.parts]
        return per, int(insns * self.kdata_per_kinsn / 1000)

    def _kdata_shifts(self) -> np.ndarray:
        """The direct map's page size at each kernel-data page, looked up
        again only after a split changed the direct map."""
        c = self.kernel.metrics.counters
        splits = c.get("directmap.level2_splits", 0) + c.get(
            "directmap.level3_splits", 0
        )
        if splits != self._splits or self.kdata_shifts is None:
            pt = self.kernel.pagetables
            per_region = [pt.page_shift(int(a)) or 12 for a in self.kregions]
            self.kdata_shifts = np.repeat(np.array(per_region, dtype=np.uint8), 512)
            self._splits = splits
        return self.kdata_shifts

    def _ranks(self, rng, n: int, k: int) -> np.ndarray:
        """k page ranks in [0, n), drawn from a continuous bounded Zipf
        (inverse CDF of x^-s on [1, n+1)): no table, O(k)."""
        u = rng.random(k)
        s = self.cfg.zipf
        if s == 1.0:
            x = np.exp(u * np.log(n + 1.0))
        else:
            a = 1.0 - s
            x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a)
        return np.minimum(x.astype(np.int64) - 1, n - 1)

    def draw(self, rng, counts: tuple[list[int], int]):
        """One draw of every touch: ``(side, owner, addrs, shifts)`` per
        non-empty part, in the parts' order (user text, kernel text, user
        data, kernel data). The host keeps only each page's last touch and
        draws through :meth:`zipf_parts` instead."""
        per, kd = counts
        out = []
        for (pages, shift, _, side, owner), k in zip(self.parts, per, strict=True):
            if not k:
                continue
            a = pages[self._ranks(rng, len(pages), k)]
            sh = np.full(len(a), shift, np.uint8)
            out.append((side, OWNER_NAMES[owner], a, sh))
        if kd:
            idx = self._ranks(rng, len(self.kdata), kd)
            shifts = self._kdata_shifts()[idx]
            wide = shifts.astype(np.uint64)
            out.append(("d", "kernel", (self.kdata[idx] >> wide) << wide, shifts))
        return out

    def walk_costs(self, part: int) -> tuple[float, float, float]:
        """One walk's cycles for part ``part`` (the kernel data after the
        parts), over its whole footprint: the host's page tables are the
        same from one stretch to the next, so they are costed once (again
        for kernel data after a split changed its page sizes)."""
        key = (part, self._splits)
        got = self._walk_memo.get(key)
        if got is None:
            if part < len(self.parts):
                pages, shift = self.parts[part][0], self.parts[part][1]
                shifts = np.full(len(pages), shift, np.uint8)
            else:
                shifts = self._kdata_shifts()
                wide = shifts.astype(np.uint64)
                pages = (self.kdata >> wide) << wide
            got = self._walk_memo[key] = self.kernel.executor.walk_costs(pages, shifts)
        return got

    def zipf_parts(self) -> ZipfParts:
        """The parts (kernel data last, as the table part) for
        :meth:`simcore.hw.tlb.Tlb.lookup_zipf`, which draws from them as
        :meth:`draw` does and keeps each page's last touch."""
        shifts = self._kdata_shifts()
        if self._zp is None or self._zp_splits != self._splits:
            first = [p[0][0] for p in self.parts] + [0]
            self._zp = ZipfParts(
                n=np.array([len(p[0]) for p in self.parts] + [len(self.kdata)]),
                base=np.array(first, dtype=np.uint64).view(np.int64),
                shift=np.array([p[1] for p in self.parts] + [0], dtype=np.int64),
                side=np.array([p[3] == "d" for p in self.parts] + [1], np.int64),
                table=len(self.parts),
                table_addrs=self.kdata.view(np.int64),
                table_shifts=shifts,
            )
            self._zp_splits = self._splits
        return self._zp

    @property
    def part_owners(self) -> tuple[str, ...]:
        """Whose each part of :meth:`zipf_parts` is."""
        return tuple(OWNER_NAMES[p[4]] for p in self.parts) + ("kernel",)
