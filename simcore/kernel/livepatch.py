"""kernel/livepatch/{core,patch,transition}.c: cumulative live patches
that replace each other.

A live patch is a module (``load_module()`` through the loader, kind
``module_*`` through the strategy) whose init calls
``klp_enable_patch()``. Under ``klp_mutex``, ``__klp_enable_patch()`` ->
``klp_patch_object()`` -> ``klp_patch_func()`` for each patched function:
the first patch of a function allocates a ``klp_ops`` with its own
``ftrace_ops`` (``FTRACE_OPS_FL_DYNAMIC | FTRACE_OPS_FL_IPMODIFY``, and
``SAVE_REGS`` where ftrace has no ARGS), ``ftrace_set_filter_ip()`` on the
function and ``register_ftrace_function()``: on x86 a trampoline of its
own (:mod:`simcore.kernel.ftrace`), and the one call site rewritten; a
function that an earlier patch already redirects only gets the new
``klp_func`` pushed on its ``func_stack`` (``list_add_rcu()``, no text
change).

With atomic replace (``klp_patch.replace``, what cumulative patches from
kpatch-build and distributions use), ``klp_add_nops()`` gives the new
patch a no-op entry for every function the old one patched and it does
not; when the transition completes, ``klp_unpatch_replaced_patches()``
takes the old patch's entries off each ``func_stack``, and a function no
patch redirects any more loses its ``ftrace_ops``
(``unregister_ftrace_function()``: the site back, the trampoline freed);
the old patch is freed (``klp_free_replaced_patches()``) and its module
can then be removed (``delete_module()``). Live patches stay bounded:
one is enabled at a time.

``klp_disable_patch()`` (``enabled`` set to 0 in sysfs) runs the same
transition towards the unpatched state and then unregisters every
function's ops; the module is removed after.

Not modelled: the transition's per-task stack checks and its retries
(``klp_try_complete_transition()`` from ``klp_transition_work`` once a
second while some task sleeps in a patched function): every transition
is taken to complete on its first try, after one
``klp_synchronize_transition()`` grace period; the relocations of
``.klp.rela`` sections; arm64's HAVE_LIVEPATCH by release (the arm64 run
does the same, without trampolines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.kernel.ftrace import FtraceOps
from simcore.kernel.module import RCU_GP_NS, LoadedModule, ModuleSpec

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


@dataclass(eq=False)
class Patch:
    """``struct klp_patch`` with the module that carries it."""

    module: LoadedModule
    funcs: frozenset[int]
    enabled: bool = True


class Livepatch:
    """klp_enable_patch() with atomic replace, and klp_disable_patch()."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.klp_mutex = kernel.machine.mutex("klp_mutex")
        self.ops: dict[int, FtraceOps] = {}  # klp_ops by function (klp_find_ops)
        self.current: Patch | None = None

    def enable(self, cpu: int, spec: ModuleSpec, funcs: frozenset[int]):
        """Load the patch module and enable its patch, replacing the one
        enabled before (whose module is then removed). Returns the Patch,
        or None when the module did not load."""
        env = self.env
        t0 = env.now
        mod = yield from self.kernel.modules.load(cpu, spec)
        if mod is None:
            self.metrics.inc("livepatch.failures")
            return None
        ftrace = self.kernel.ftrace
        mutex = self.klp_mutex
        yield from mutex.lock(cpu)
        old = self.current
        # klp_patch_func() for each function: a new ftrace_ops for one no
        # patch redirects yet, a func_stack push for the others
        for f in sorted(funcs - self.ops.keys()):
            ops = FtraceOps(sites=1, dynamic=True)
            yield from ftrace.register(cpu, ops)
            self.ops[f] = ops
        # klp_start_transition() ... klp_complete_transition()
        yield env.timeout(RCU_GP_NS)  # klp_synchronize_transition()
        patch = Patch(mod, funcs)
        self.current = patch
        # klp_unpatch_replaced_patches(): functions only the old patch
        # redirected (its nops in the new one) lose their ftrace_ops
        if old is not None:
            yield from self._unpatch(cpu, old.funcs - funcs)
            old.enabled = False
        mutex.release(cpu)
        self.metrics.inc("livepatch.enabled")
        self.metrics.latency("livepatch_enable", env.now - t0)
        if old is not None:
            # klp_free_replaced_patches(), then rmmod of the old module
            self.metrics.inc("livepatch.replaced")
            self.metrics.inc("livepatch.enabled", -1)
            yield from self.kernel.modules.unload(cpu, old.module)
        return patch

    def disable(self, cpu: int):
        """klp_disable_patch() of the enabled patch, then rmmod."""
        env = self.env
        t0 = env.now
        patch = self.current
        if patch is None:
            return False
        mutex = self.klp_mutex
        yield from mutex.lock(cpu)
        # __klp_disable_patch(): the transition to KLP_UNPATCHED, then
        # klp_unpatch_objects() of every function
        yield env.timeout(RCU_GP_NS)  # klp_synchronize_transition()
        yield from self._unpatch(cpu, patch.funcs)
        patch.enabled = False
        self.current = None
        mutex.release(cpu)
        self.metrics.inc("livepatch.enabled", -1)
        yield from self.kernel.modules.unload(cpu, patch.module)
        self.metrics.latency("livepatch_disable", env.now - t0)
        return True

    def _unpatch(self, cpu: int, funcs):
        """klp_unpatch_func() of the last klp_func on a function's stack:
        unregister_ftrace_function() and ftrace_set_filter_ip(remove)."""
        ftrace = self.kernel.ftrace
        for f in sorted(funcs):
            ops = self.ops.pop(f, None)
            if ops is not None:
                yield from ftrace.unregister(cpu, ops)
