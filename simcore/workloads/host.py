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
footprint, and :meth:`simcore.hw.tlb.Tlb.lookup_zipf` draws, keeps and
looks up all the parts in one call. CPUs that run no workload code run no
host code,
so an allocator-only workload pays nothing for it. Host touches are
counted as ``user`` and ``kernel`` in the attributed TLB metrics and their
instructions in ``cpu.instructions``, as ``perf stat -a`` counts the whole
machine; the time their misses cost is the host's, not the workload's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from simcore.hw.tlb import TlbStats
from simcore.units import Duration, Rate
from simcore.workloads.footprint import Footprint, Touches, kernel_text_base

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
        self._residue: dict[int, float] = {}
        self._rngs: dict[int, np.random.Generator] = {}
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
        rng = self._rngs.get(cpu)
        if rng is None:
            rng = self._rngs[cpu] = self.kernel.rng(f"host.cpu{cpu}")
        # one stretch between each two TLB-dropping events
        per = insns / (drops + 1)
        per_part, kdata = self.touches.counts(per)
        ks = [*per_part, kdata]
        off = np.zeros(len(ks) + 1, np.int64)
        off[1:] = np.cumsum(ks)
        touches = self.touches
        parts = touches.zipf_parts()
        owners = touches.part_owners
        tlb = self.kernel.machine.tlb(cpu)
        account = self.executor.account
        for seg in range(drops + 1):
            if seg:
                self.drop(cpu)
            # every part drawn, kept and looked up in one call; each part is
            # then one owner's batch: the parts follow each other anyway
            u = rng.random(int(off[-1]))
            rows = tlb.lookup_zipf(parts, u, off, touches.cfg.zipf)
            # the stretch's instructions go with its first code part
            left = int(per)
            for p, k in enumerate(ks):
                if not k:
                    continue
                side = "id"[parts.side[p]]
                n, left = (left, 0) if side == "i" else (0, left)
                m.inc("cpu.instructions", n)
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
        tlb.invalidate_range(0, USER_END)
        if self.drop_kernel:
            if self.keep_image:
                tlb.invalidate_range(KERNEL_HALF, self.image)
                tlb.invalidate_range(self.image_end, 1 << 64)
            else:
                tlb.invalidate_range(KERNEL_HALF, 1 << 64)
