"""``background``: the rest of the machine's code and data in the TLBs.

Published gains of huge-page text (bpf_prog_pack, execmem) were measured
on hosts busy with other work, whose own code and data compete for the
same iTLB, dTLB and STLB entries. Each CPU of ``cpus`` runs, every
quantum, ``ipc`` x clock x quantum instructions; a ``kernel_share`` of
them in the core kernel. Code touches a new page every
``1000 / i_pages_per_kinsn`` instructions, data every
``1000 / d_pages_per_kinsn``; which page is drawn from a bounded
continuous Zipf(``zipf``) over the footprint, hottest pages first:

- user text at 0x555555554000 (4K pages, or 2M with ``user_text_huge``,
  as with CONFIG_READ_ONLY_THP_FOR_FS or a hugetlbfs-remapped binary);
- user data at 0x7f0000000000 (4K pages, or 2M with ``user_data_huge``:
  THP);
- core kernel text at 0xffffffff81000000, mapped with 2M pages
  (Documentation/arch/x86/x86_64/mm.rst);
- kernel data in the direct map, at the size the direct map currently
  has there (so CPA splits show up as more, smaller pages).

Presets (every figure an estimate, no published per-page profile of
these jobs was found): ``compile``, a C++ compile job: cc1plus has about
25 MiB of text, a large heap, ~15 % of time in the kernel (page faults,
file reads); ``webserver``: a small server binary, most time in the
network stack (~60 % kernel), larger kernel text and data footprints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from simcore.strict import Strict
from simcore.units import Size
from simcore.workloads.execution import exec_cpus

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

DESCRIPTION = "user-space and core-kernel code/data competing for the TLBs"

USER_TEXT = 0x555555554000
USER_DATA = 0x7F0000000000
KERNEL_TEXT = 0xFFFFFFFF81000000
M = 1 << 20

PRESETS: dict[str, dict[str, float]] = {
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


class Background(Strict):
    type: Literal["background"]
    preset: Literal["compile", "webserver"] = "compile"
    cpus: int | None = Field(default=None, ge=1, description="default: all")
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
    def _fill(self) -> Background:
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def start(self, kernel: Kernel, index: int) -> None:
        run = _Run(self, kernel, f"workload.{index}.background")
        for cpu in exec_cpus(kernel, self.cpus):
            kernel.env.process(run.cpu_loop(cpu))


# whose touches the background makes, for the attributed TLB metrics
OWNER_NAMES = ("user", "kernel")
_USER, _KERNEL = 0, 1


def _pages(base: int, size: int, shift: int) -> np.ndarray:
    n = max(1, -(-size // (1 << shift)))
    return np.uint64(base) + (np.arange(n, dtype=np.uint64) << np.uint64(shift))


class _Run:
    def __init__(self, cfg: Background, kernel: Kernel, tag: str) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.tag = tag
        insns = cfg.ipc * kernel.profile.clock_ghz.value * kernel.quantum
        self.insns = int(insns)
        k = cfg.kernel_share
        ui, ud = 12 + 9 * cfg.user_text_huge, 12 + 9 * cfg.user_data_huge
        # (pages, shift, touches per quantum, side); owners in the same order
        self.owners = [_USER, _KERNEL, _USER]
        self.parts = [
            (
                _pages(USER_TEXT, cfg.user_text, ui),
                ui,
                (1 - k) * cfg.i_pages_per_kinsn,
                "i",
            ),
            (
                _pages(KERNEL_TEXT, cfg.kernel_text, 21),
                21,
                k * cfg.i_pages_per_kinsn,
                "i",
            ),
            (
                _pages(USER_DATA, cfg.user_data, ud),
                ud,
                (1 - k) * cfg.d_pages_per_kinsn,
                "d",
            ),
        ]
        self.parts = [
            (p, s, int(insns * per_k / 1000), side) for p, s, per_k, side in self.parts
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
        self.kdata_touches = int(insns * k * cfg.d_pages_per_kinsn / 1000)
        # every quantum touches the same number of pages of each part, so
        # whose each touch is stays the same: one owner array per side
        own = {"i": [], "d": []}
        for (_, _, n, side), who in zip(self.parts, self.owners, strict=True):
            own[side].append(np.full(n, who, np.int64))
        own["d"].append(np.full(self.kdata_touches, _KERNEL, np.int64))
        self.owner_codes = {
            side: (np.concatenate(a), OWNER_NAMES) for side, a in own.items()
        }
        self.kdata_shifts: np.ndarray | None = None
        self._splits = -1

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

    def cpu_loop(self, cpu: int):
        kernel = self.kernel
        env = kernel.env
        rng = kernel.rng(f"{self.tag}.cpu{cpu}")
        execu = kernel.executor
        while True:
            yield env.timeout(kernel.quantum)
            i_addrs, i_shifts, d_addrs, d_shifts = [], [], [], []
            for pages, shift, k, side in self.parts:
                if not k:
                    continue
                a = pages[self._ranks(rng, len(pages), k)]
                (i_addrs if side == "i" else d_addrs).append(a)
                (i_shifts if side == "i" else d_shifts).append(
                    np.full(len(a), shift, np.uint8)
                )
            if self.kdata_touches:
                idx = self._ranks(rng, len(self.kdata), self.kdata_touches)
                shifts = self._kdata_shifts()[idx]
                d_addrs.append(
                    (self.kdata[idx] >> shifts.astype(np.uint64))
                    << shifts.astype(np.uint64)
                )
                d_shifts.append(shifts)
            if i_addrs:
                execu.run(
                    cpu,
                    np.concatenate(i_addrs),
                    np.concatenate(i_shifts),
                    "i",
                    self.insns,
                    owner=self.owner_codes["i"],
                )
            if d_addrs:
                execu.run(
                    cpu,
                    np.concatenate(d_addrs),
                    np.concatenate(d_shifts),
                    "d",
                    0,
                    owner=self.owner_codes["d"],
                )
            kernel.metrics.inc("workload.background.quanta")
