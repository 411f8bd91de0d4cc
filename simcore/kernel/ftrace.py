"""kernel/trace/ftrace.c with arch/x86/kernel/ftrace.c: ftrace_ops and the
dynamic trampolines that carry them.

An ``ftrace_ops`` names the functions it traces (its filter hash); when it
is registered (``register_ftrace_function()`` -> ``ftrace_startup()``) or
unregistered (``ftrace_shutdown()``), ``ftrace_lock`` is held while the call
sites are rewritten: ``ftrace_run_update_code()`` ->
``ftrace_replace_code()``, the architecture's path
(``text_poke.ftrace_update``).

On x86, ``__register_ftrace_function()`` also calls
``ftrace_update_trampoline()`` -> ``arch_ftrace_update_trampoline()``: an
ops without a trampoline gets one from ``create_trampoline()``, an
``alloc_tramp()`` of executable memory (``module_alloc()`` before v6.10,
``execmem_alloc(EXECMEM_FTRACE)`` since: kind ``ftrace`` through the
strategy), into which ``ftrace_caller`` (or ``ftrace_regs_caller``) is
copied together with a pointer to the ops, then protected; a call site
traced by that one ops calls its trampoline directly. An ops that already
has one (created with ``FTRACE_OPS_FL_ALLOC_TRAMP``) only has the call
inside it repointed, one ``text_poke_bp()``. ``ftrace_shutdown()`` frees
the trampoline of a dynamically allocated ops (``FTRACE_OPS_FL_DYNAMIC``:
livepatch's, BPF's) after ``synchronize_rcu_tasks_rude()`` (and
``synchronize_rcu_tasks()`` on a preemptible kernel), in
``ftrace_trampoline_free()`` -> ``arch_ftrace_trampoline_free()``; a static
ops (the function tracer's ``global_ops``) keeps its trampoline for good.

arm64 has no ``arch_ftrace_update_trampoline()`` (the weak empty one): its
call sites branch to the shared ``ftrace_caller``, so nothing is allocated
there.

What is modelled: the call-site rewrite of each (un)registration, the
trampoline's allocation, write and protection through the strategy, its
repointing and its free, and ``ftrace_lock`` around all of it. The filter
hash updates and ``ftrace_ops_list`` manipulation cost nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.kernel.execmem import ExecAlloc
from simcore.kernel.module import RCU_GP_NS

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# Estimate: create_trampoline() copies ftrace_regs_caller..ftrace_regs_caller_end
# (save_mcount_regs, the pt_regs stores and loads, the call; a few hundred
# bytes of arch/x86/kernel/ftrace_64.S), then RET_SIZE and sizeof(void *)
# for the ops pointer: ~320 bytes in all.
FTRACE_TRAMPOLINE_SIZE = 320
# MCOUNT_INSN_SIZE on x86-64: the 5-byte call that the repointing rewrites
MCOUNT_INSN_SIZE = 5


@dataclass(eq=False)
class FtraceOps:
    """``struct ftrace_ops``: how many call sites its filter holds, whether
    it was allocated at run time (``FTRACE_OPS_FL_DYNAMIC``), its
    trampoline and whether it is registered."""

    sites: int
    dynamic: bool = True
    trampoline: ExecAlloc | None = None
    enabled: bool = False
    # how often each of its functions runs per CPU per second: the INT3
    # hits while x86 rewrites the call sites (simcore.kernel.alternative)
    site_rate: float = 0.0


class Ftrace:
    """ftrace_ops registration with its trampolines (see the module doc)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.ftrace_lock = kernel.machine.mutex("ftrace_lock")
        # arch_ftrace_update_trampoline() exists on x86 only
        self.trampolines = kernel.profile.arch != "arm64"

    def register(self, cpu: int, ops: FtraceOps):
        """register_ftrace_function(): ``ftrace_lock``, the trampoline
        (x86), then the ops' call sites."""
        yield from self.ftrace_lock.lock(cpu)
        yield from self._startup(cpu, ops)
        self.ftrace_lock.release(cpu)

    def unregister(self, cpu: int, ops: FtraceOps):
        """unregister_ftrace_function(): ``ftrace_shutdown()`` under
        ``ftrace_lock``."""
        yield from self.ftrace_lock.lock(cpu)
        yield from self._shutdown(cpu, ops)
        self.ftrace_lock.release(cpu)

    def toggle(self, cpu: int, ops: FtraceOps):
        """Tracing of ``ops`` turned on if it was off, off if it was on
        (``echo function > current_tracer`` and back)."""
        if ops.enabled:
            yield from self.unregister(cpu, ops)
        else:
            yield from self.register(cpu, ops)

    # -- with ftrace_lock held -----------------------------------------------
    def _startup(self, cpu: int, ops: FtraceOps):
        """ftrace_startup(): __register_ftrace_function() with its
        ftrace_update_trampoline(), then ftrace_startup_enable()'s
        ftrace_run_update_code() over the ops' sites."""
        if self.trampolines:
            yield from self._update_trampoline(cpu, ops)
        yield from self.kernel.text_poke.ftrace_update(cpu, ops.sites, ops.site_rate)
        ops.enabled = True
        self.metrics.inc("ftrace.ops_registered")

    def _shutdown(self, cpu: int, ops: FtraceOps):
        """ftrace_shutdown(): the sites back to NOPs, then, for a dynamic
        ops, the RCU-tasks waits and ftrace_trampoline_free()."""
        if not ops.enabled:
            return
        yield from self.kernel.text_poke.ftrace_update(cpu, ops.sites, ops.site_rate)
        ops.enabled = False
        self.metrics.inc("ftrace.ops_registered", -1)
        if ops.dynamic:
            # synchronize_rcu_tasks_rude() (+ synchronize_rcu_tasks() when
            # preemptible) for every dynamic ops, with a trampoline or not
            # (arm64, or x86 after a failed create_trampoline()): one grace
            # period, the loader's estimate
            yield self.env.timeout(RCU_GP_NS)
            if ops.trampoline is not None:
                yield from self.kernel.exec_alloc.free(cpu, ops.trampoline)
                ops.trampoline = None
                self.metrics.inc("ftrace.trampolines", -1)

    def _update_trampoline(self, cpu: int, ops: FtraceOps):
        """arch_ftrace_update_trampoline(): create_trampoline() the first
        time (alloc_tramp(), the copy of ftrace_caller and the ops pointer,
        the protection), else text_poke_bp() of the call inside it. Without
        memory the ops goes on through the shared ftrace_caller, as
        create_trampoline()'s failure leaves it."""
        if ops.trampoline is not None:
            yield from self.kernel.text_poke.text_poke_bp(cpu, 1, MCOUNT_INSN_SIZE)
            return
        st = self.kernel.exec_alloc
        obj = yield from st.alloc(cpu, FTRACE_TRAMPOLINE_SIZE, "ftrace")
        if obj is None:
            self.metrics.inc("ftrace.trampoline_failures")
            return
        yield from st.write(cpu, obj, FTRACE_TRAMPOLINE_SIZE)
        yield from st.finalize(cpu, obj)
        ops.trampoline = obj
        self.metrics.inc("ftrace.trampolines")
