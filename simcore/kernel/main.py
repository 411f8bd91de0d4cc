"""init/main.c: the modelled kernel of one simulation, brought up in order.

``start_kernel()`` brings up memory management bottom up, and so does
:class:`Kernel`: the page allocator (mm/page_alloc.c), init_mm's page
tables and the direct map, vmalloc (mm/vmalloc.c), CPA
(arch/x86/mm/pat/set_memory.c, whose ``vm_unmap_aliases()`` is
mm/vmalloc.c's), text patching and the BPF core; then the state of a
captured host, when the knobs name captures (:mod:`.host_state`). The
module loader comes up on first use, as a kernel without modules never
builds its state; so do kprobes, ftrace's ops and livepatch.

The kernel does not choose its executable-memory or arena allocator: the
engine plugs a provider in (``policy``), and ``exec_alloc`` / ``arena_ops``
ask it, the way ``execmem_info`` is filled by the architecture. The
mechanisms here never import a strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

from simcore.context import SimContext
from simcore.hw.execute import Executor
from simcore.hw.machine import Machine
from simcore.kernel.alternative import TextPoke
from simcore.kernel.arm64.pageattr import Arm64PageAttr
from simcore.kernel.arm64.patching import Arm64Patching
from simcore.kernel.bpf.core import BpfCore
from simcore.kernel.execmem import ExecAllocator
from simcore.kernel.ftrace import Ftrace
from simcore.kernel.host_state import HostState
from simcore.kernel.kprobes import Kprobes
from simcore.kernel.livepatch import Livepatch
from simcore.kernel.module import ModuleLoader
from simcore.kernel.page_alloc import PageAlloc
from simcore.kernel.pgtable import KernelPageTables
from simcore.kernel.set_memory import Cpa
from simcore.kernel.vmalloc import Vmalloc
from simcore.kernel.vmscan import Shrinkers

# the execmem users that are BPF's (execmem_range())
BPF_KINDS = frozenset({"bpf_prog", "bpf_trampoline"})


class Kernel:
    def __init__(
        self,
        ctx: SimContext,
        machine: Machine,
        executor: Executor,
        policy: Callable[[str], Any] | None = None,
    ) -> None:
        self.ctx = ctx
        # what nearly every subsystem reads, named once
        self.env = ctx.env
        self.metrics = ctx.metrics
        self.profile = ctx.profile
        self.knobs = ctx.knobs
        self.layout = ctx.layout
        self.hooks = ctx.hooks
        self.nr_cpus = ctx.nr_cpus
        self.quantum = ctx.quantum
        self.machine = machine
        self.executor = executor
        self._policy = policy
        self.shrinkers = Shrinkers(self)
        self.page_alloc = PageAlloc(self)
        self.pagetables = KernelPageTables(self, self.page_alloc)
        self.vmalloc = Vmalloc(self)
        # the architecture's own: arch/x86/mm/pat/set_memory.c and
        # arch/x86/kernel/alternative.c, or arch/arm64/mm/pageattr.c and
        # arch/arm64/kernel/patching.c behind the same calls
        self.cpa: Cpa | Arm64PageAttr
        self.text_poke: TextPoke | Arm64Patching
        if self.profile.arch == "arm64":
            rng = self.profile.cpu.tlbi_range
            machine.flush.use_range_ops(
                bool(self.knobs.tlbi_range_kernel), bool(rng and rng.value)
            )
            self.cpa = Arm64PageAttr(
                self,
                self.pagetables,
                find_vm_area=self.vmalloc.find_vm_area,
                vm_unmap_aliases=self.vmalloc.vm_unmap_aliases,
            )
            self.text_poke = Arm64Patching(self)
        else:
            inv = self.profile.cpu.invlpgb
            if self.knobs.invlpgb and inv is not None and inv.value:
                # flush_tlb_kernel_range() with INVLPGB + TLBSYNC (v6.15+)
                machine.flush.broadcast = "invlpgb"
            self.cpa = Cpa(
                self, self.pagetables, vm_unmap_aliases=self.vmalloc.vm_unmap_aliases
            )
            self.text_poke = TextPoke(self)
        self.bpf = BpfCore(self)
        # the captured host's state, if the knobs name captures: time zero
        self.host = HostState(self)
        self.host.boot()

    def rng(self, name: str):
        return self.ctx.rng(name)

    # -- the providers the engine plugged in -----------------------------------
    @property
    def exec_alloc(self) -> ExecAllocator:
        """The executable-memory allocator in force."""
        return self._policy("exec")

    @property
    def arena_ops(self):
        """The BPF arena strategy in force."""
        return self._policy("arena")

    @cached_property
    def pti(self) -> bool:
        """Whether page table isolation is on: ``pti=auto`` follows
        X86_BUG_CPU_MELTDOWN (pti_check_boottime_disable(),
        arch/x86/mm/pti.c); x86 only."""
        mode = self.knobs.pti
        if self.profile.arch != "x86_64" or mode == "off":
            return False
        return mode == "on" or self.profile.cpu.meltdown.value

    def execmem_range(self, kind: str) -> str:
        """The vmalloc range execmem_info gives ``kind``: module memory on
        x86 (and arm64 modules); on arm64 BPF programs and trampolines in
        BPF_JIT_REGION up to v5.16 and in the vmalloc range from v5.17
        (b89ddf4cca43; EXECMEM_BPF from v6.10), and kprobe instruction
        pages in the vmalloc range, as arm64's alloc_insn_page() took them
        (__vmalloc_node_range(VMALLOC_START, VMALLOC_END, PAGE_KERNEL_ROX))
        and EXECMEM_KPROBES keeps them."""
        if self.profile.arch != "arm64":
            return "modules"
        if kind == "kprobe":
            return "vmalloc"
        if kind not in BPF_KINDS:
            return "modules"
        return "bpf" if "bpf" in self.layout.ranges else "vmalloc"

    @cached_property
    def walk_4k_ns(self) -> float:
        """One 4K page walk of a single hot page of tables (a mapping just
        written, as text patching's poking or fixmap address and
        pageattr's PTE walk see it), in ns."""
        return self.executor.walker.walk_cycles(12, 1, 1) / self.profile.clock_ghz.value

    @cached_property
    def modules(self) -> ModuleLoader:
        """kernel/module: the loader, built the first time a module loads
        (its mutex and counters appear only in runs that load modules)."""
        return ModuleLoader(self)

    @cached_property
    def kprobes(self) -> Kprobes:
        """kernel/kprobes.c: its mutex, slot caches and optimizer, built on
        first use like the loader."""
        return Kprobes(self)

    @cached_property
    def jump_label_mutex(self):
        """kernel/jump_label.c's jump_label_mutex (jump_label_lock()): one
        for the kernel, which every static key update takes, made on first
        use (no lock metrics in runs without static keys)."""
        return self.machine.mutex("jump_label_mutex")

    @cached_property
    def ftrace(self) -> Ftrace:
        """kernel/trace/ftrace.c: ftrace_lock and the ops trampolines."""
        return Ftrace(self)

    @cached_property
    def livepatch(self) -> Livepatch:
        """kernel/livepatch: the enabled patch and its klp_ops."""
        return Livepatch(self)

    def finish(self) -> None:
        """End of run: what the kernel reports once (vmalloc's counters,
        the kprobe hits of the last interval)."""
        self.vmalloc.finish()
        if "kprobes" in self.__dict__:  # built: some workload used kprobes
            self.kprobes.accrue()
