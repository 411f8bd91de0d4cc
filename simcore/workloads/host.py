"""Host activity: the code and data every CPU runs besides the workload.

A strategy's pages never have the TLBs to themselves: between the
invocations of a BPF program or the calls into a module, the CPU runs user
code and the rest of the kernel. The workload file's ``host:`` section
describes that code (a :class:`~simcore.workloads.footprint.Footprint`,
``syscall`` by default) and the events that change what the TLBs may keep:

- ``syscalls``: user/kernel transitions per second of a CPU. With page
  table isolation (``kernel.pti``) and no PCID every return to user space
  writes CR3, dropping every non-global entry: user pages and, since
  kernel mappings are non-global under PTI (``probe_page_size_mask()``,
  arch/x86/mm/init.c, since c313ec66317d in v4.15), modules, BPF images,
  vmalloc and the direct map. The kernel image stays global when PCID is
  absent and PTI is automatic (``pti_kernel_image_global_ok()``,
  arch/x86/mm/pti.c, 8c06c7740d19 in v4.17).
- ``mm_switches``: context switches to another process per second. A CR3
  write without PCID drops the user entries; with PCID each mm has its own
  ASID (``choose_new_asid()``, arch/x86/mm/tlb.c), so the other mm's
  entries are unusable, not dropped; the model drops them (they would
  otherwise only take room). Under PTI the kernel's own entries are tagged
  with the mm's kernel ASID, so they go too.

Rather than a process per CPU, the host catches up inside the executor:
just before a CPU's workload touches go through its TLBs, the host's
touches for the time since that CPU last ran anything are drawn and run
first, in as many segments as there were TLB-dropping events, with the
drop between segments. Within a segment each page is touched once, at its
last draw: an LRU TLB ends in the same state as after every touch as long
as the page was not evicted between its touches (true of the hot pages
that make most repeats), and the misses of a page evicted and touched again
within the segment are not counted. That cuts the host's touches by the
repeat factor of the Zipf draws, about 40x for the ``syscall`` code
footprint. With the ``fast`` TLB model a CPU's whole catch-up (every
segment's draws, kept pages, lookups, drops and counts) is one compiled
call (:func:`simcore.hw.tlb_kernels.host_kernel`), drawing from the CPU's
generator inside the kernel (:class:`simcore.hw.zipf_touch.Pcg64Stream`);
the ``exact`` model takes the generic path, part by part, that the kernel
is tested against. CPUs that run no workload code run no host code, so an
allocator-only workload pays nothing for it. Host touches are
counted as ``user`` and ``kernel`` in the attributed TLB metrics and their
instructions in ``cpu.instructions``, as ``perf stat -a`` counts the whole
machine; the time their misses cost is the host's, not the workload's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from simcore.hw.tlb import TlbStats, range_bounds, to_i64
from simcore.hw.zipf_touch import HostDraws, Pcg64Stream
from simcore.units import Duration, Rate
from simcore.workloads.footprint import (
    OWNER_NAMES,
    Footprint,
    Touches,
    kernel_text_base,
)

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

USER_END = 1 << 47
KERNEL_HALF = 1 << 63  # the upper canonical half, as an unsigned address


class HostConfig(Footprint):
    """The workload file's ``host:`` section."""

    enabled: bool = Field(
        default=True, description="false: the workload's pages alone in the TLBs"
    )
    syscalls: Rate = Field(default=200_000.0, ge=0)
    mm_switches: Rate = Field(default=1_000.0, ge=0)
    busy_cpus: int | None = Field(
        default=None, ge=0, description="CPUs running something (default: all)"
    )
    irqs_off: float = Field(
        default=0.01, ge=0, le=1, description="share of a busy CPU's time with IRQs off"
    )
    irqs_off_section: Duration = Field(default="5us", gt=0)


class HostActivity:
    """Catches the host's code up on a CPU before its workload batch."""

    def __init__(self, cfg: HostConfig, kernel: Kernel) -> None:
        self.cfg = cfg
        self.kernel = kernel
        self.executor = kernel.executor
        self.env = kernel.env
        self.touches = Touches(cfg, kernel, "host")
        self.per_ns = cfg.ipc * kernel.profile.clock_ghz.value
        self.last: dict[int, int] = {}
        self.excluded: set[int] = set()
        pti = kernel.pti
        pcid = kernel.profile.cpu.pcid.value
        # TLB-dropping events per ns, and what each drops
        self.drop_rate = cfg.mm_switches / 1e9
        if pti and not pcid:
            self.drop_rate += cfg.syscalls / 1e9
        self.drop_kernel = pti
        # PTI's price per system call: a CR3 write on entry and one on the
        # way out (SWITCH_TO_KERNEL_CR3 / SWITCH_TO_USER_CR3 in
        # arch/x86/entry/calling.h), each what the profile's CR3 write
        # costs; with PCID they carry NOFLUSH and keep the TLB
        cr3 = kernel.profile.flush.cr3_flush_cycles.value
        ghz = kernel.profile.clock_ghz.value
        self.pti_ns_per_ns = cfg.syscalls / 1e9 * 2 * cr3 / ghz if pti else 0.0
        self.keep_image = pti and not pcid and kernel.knobs.pti == "auto"
        # the kernel image's global mapping: from its text's 2M page up to
        # the module area (MODULES_VADDR on x86-64)
        self.image = kernel_text_base(kernel.layout) & ~((1 << 21) - 1)
        self.image_end = kernel.layout.modules_vaddr
        # what a drop invalidates: user space, and under PTI the kernel
        # half (but the image while it stays global)
        self._drop_ranges = [(0, USER_END)]
        if self.drop_kernel:
            if self.keep_image:
                self._drop_ranges += [(KERNEL_HALF, self.image)]
                self._drop_ranges += [(self.image_end, 1 << 64)]
            else:
                self._drop_ranges += [(KERNEL_HALF, 1 << 64)]
        # the same as int64 bit patterns of their first and last byte
        bounds = (range_bounds(lo, hi) for lo, hi in self._drop_ranges)
        self._ranges = [[to_i64(a), to_i64(b)] for a, b in filter(None, bounds)]
        self._residue: dict[int, float] = {}
        self._streams: dict[int, Pcg64Stream] = {}
        # touches per part by instructions per stretch: the same figure
        # nearly every quantum
        self._counts: dict[float, tuple[tuple[int, ...], bool]] = {}
        # which parts are data (the kernel data, a table part, last)
        self._data = [p[3] == "d" for p in self.touches.parts] + [True]
        self._draws: HostDraws | None = None
        self._ks: tuple[int, ...] | None = None
        # where host_kernel's counts go, in its order (see the kernel)
        self._keys = ["itlb.misses", "dtlb.misses", "stlb.misses"]
        self._keys += ["pagewalk.cycles", "pagewalk.walks", None]
        for owner in OWNER_NAMES:
            self._keys += [f"itlb.misses.{owner}", f"dtlb.misses.{owner}"]
            self._keys += [f"stlb.misses.{owner}", f"pagewalk.cycles.{owner}"]
        self._out = np.zeros(2 * len(self._keys), dtype=np.int64)
        n = kernel.nr_cpus
        self.busy = n if cfg.busy_cpus is None else min(cfg.busy_cpus, n)
        states = kernel.profile.cpu.idle_states
        self.idle_exit_ns = states[-1].exit_ns if states else 0.0
        self.ipi_rng = kernel.rng("host.ipi")
        kernel.machine.flush.target_delay = self.target_delay

    def target_delay(self, cpu: int, ids: np.ndarray) -> np.ndarray:
        """Extra ns before each target in ``ids`` acknowledges an IPI.

        A busy CPU takes it at once unless it is inside an IRQs-off section,
        whose rest (exponential, so memoryless, with the section's mean)
        the sender waits out; an idle CPU first leaves its C-state. Idle
        CPUs (those past ``busy_cpus``) stay idle for the whole run, so the
        governor has long since put them in the deepest state.
        """
        cfg = self.cfg
        rng = self.ipi_rng
        out = np.zeros(len(ids))
        busy = ids < self.busy
        nb = int(busy.sum())
        if nb and cfg.irqs_off:
            off = rng.random(nb) < cfg.irqs_off
            k = int(off.sum())
            if k:
                rest = np.zeros(nb)
                rest[off] = rng.exponential(cfg.irqs_off_section, k)
                out[busy] = rest
                self.kernel.metrics.inc("host.ipi_irqs_off_waits", k)
        if nb < len(ids):
            out[~busy] = self.idle_exit_ns
            self.kernel.metrics.inc("host.ipi_idle_wakeups", len(ids) - nb)
        return out

    def exclude(self, cpus) -> None:
        """CPUs whose host code a ``background`` entry runs instead."""
        self.excluded.update(cpus)

    def catch_up(self, cpu: int) -> None:
        now = self.env.now
        last = self.last.get(cpu, 0)
        # at most once a quantum, like a batch: a workload calling the
        # executor more often than that would otherwise pay a host draw
        # per call
        if now - last < self.kernel.quantum or cpu in self.excluded:
            return
        self.last[cpu] = now
        insns = (now - last) * self.per_ns
        drops = self._drops(cpu, now - last)
        m = self.kernel.metrics
        m.inc("host.instructions", int(insns))
        if self.pti_ns_per_ns:
            m.cpu_time("pti", int((now - last) * self.pti_ns_per_ns))
        if drops:
            m.inc("host.tlb_drops", drops)
        stream = self._streams.get(cpu)
        if stream is None:
            rng = self.kernel.rng(f"host.cpu{cpu}")
            stream = self._streams[cpu] = Pcg64Stream(rng)
        # one stretch between each two TLB-dropping events
        per = insns / (drops + 1)
        got = self._counts.get(per)
        if got is None:
            if len(self._counts) > 64:
                self._counts.clear()
            per_part, kdata = self.touches.counts(per)
            ks = (*per_part, kdata)
            # the stretch's instructions go with its first code part
            code = any(k and not d for k, d in zip(ks, self._data, strict=True))
            got = self._counts[per] = (ks, code)
        ks, code = got
        if not any(ks):
            return
        m.inc("cpu.instructions", int(per) * (drops + 1) if code else 0)
        tlb = self.kernel.machine.tlb(cpu)
        if tlb.model == "fast":
            self._fast(tlb, stream, ks, drops + 1)
        else:
            self._generic(cpu, tlb, stream, ks, drops + 1)

    def _fast(self, tlb, stream, ks, nseg: int) -> None:
        """Every stretch drawn, kept, looked up and counted in one compiled
        call (simcore.hw.tlb_kernels.host_kernel): _generic()'s numpy
        draws, per-part calls and accounting cost more than the lookups."""
        touches = self.touches
        zp = touches.zipf_parts()
        draws = self._draws
        if draws is None or draws.zp is not zp:
            draws = self._host_draws(zp)
        if self._ks is not ks:
            draws.set_counts(ks)
            self._ks = ks
        out = self._out
        tlb.host_stretch(stream.state, draws, nseg, out)
        m = self.kernel.metrics
        vals = out.tolist()
        half = len(vals) // 2
        for i, key in enumerate(self._keys):
            if vals[half + i]:
                if key is None:
                    m.cpu_time("pagewalk", vals[i])
                else:
                    m.inc(key, vals[i])

    def _host_draws(self, zp):
        """The kernel's view of the parts (made once, then updated when the
        direct map's page sizes change): pages, walk costs (the same
        Touches.walk_costs the generic path charges) and the drops."""
        if self._draws is None:
            owners = [OWNER_NAMES.index(o) for o in self.touches.part_owners]
            self._draws = HostDraws(zp, owners, self.touches.cfg.zipf, self._ranges)
        draws = self._draws
        draws.set_parts(zp)
        ex = self.executor
        for p, d in enumerate(zp.side.tolist()):
            divisor = float(max(1, ex.walker.walkers)) if d else 1.0
            draws.set_costs(p, self.touches.walk_costs(p), divisor, ex.ghz)
        return draws

    def _generic(self, cpu: int, tlb, stream, ks, nseg: int) -> None:
        """The reference path (any TLB model): each stretch drawn, kept
        and looked up part by part, counted by Executor.account."""
        off = np.zeros(len(ks) + 1, np.int64)
        off[1:] = np.cumsum(ks)
        touches = self.touches
        parts = touches.zipf_parts()
        owners = touches.part_owners
        account = self.executor.account
        for seg in range(nseg):
            if seg:
                self.drop(cpu)
            # every part drawn, kept and looked up in one call; each part is
            # then one owner's batch: the parts follow each other anyway
            u = stream.random(int(off[-1]))
            rows = tlb.lookup_zipf(parts, u, off, touches.cfg.zipf)
            for p, k in enumerate(ks):
                if not k:
                    continue
                side = "id"[parts.side[p]]
                stats = TlbStats(*rows[p].tolist())
                account(side, owners[p], stats, touches.walk_costs(p))

    def _drops(self, cpu: int, elapsed: int) -> int:
        """Whole TLB-dropping events in ``elapsed`` ns, carrying fractions
        over so the long-run count is exact."""
        if not self.drop_rate:
            return 0
        x = self._residue.get(cpu, 0.0) + elapsed * self.drop_rate
        n = int(x)
        self._residue[cpu] = x - n
        return n

    def drop(self, cpu: int) -> None:
        """One CR3 write's worth of dropped entries on ``cpu`` (see module)."""
        tlb = self.kernel.machine.tlb(cpu)
        for start, end in self._drop_ranges:
            tlb.invalidate_range(start, end)
