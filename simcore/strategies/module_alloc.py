"""``module_alloc``: one vmalloc area per allocation in the module range.

Models arch/x86/kernel/module.c ``module_alloc()`` before execmem (v6.10):
``__vmalloc_node_range(size, MODULE_ALIGN, MODULES_VADDR + offset,
MODULES_END, GFP_KERNEL, PAGE_KERNEL, VM_FLUSH_RESET_PERMS, ...)``, which
was also the BPF JIT's allocator before bpf_prog_pack (v5.18): every
program gets at least one page of its own. Freeing goes through ``vfree``
with ``VM_FLUSH_RESET_PERMS``, so each free purges lazy areas and flushes
at once.
"""

from __future__ import annotations

from simcore.kernel.vmalloc import VM_FLUSH_RESET_PERMS
from simcore.strategies.base import ExecAlloc, Strategy


class ModuleAlloc(Strategy):
    name = "module_alloc"
    summary = "per-allocation vmalloc in the module range, 4K pages"
    models = "module_alloc(), Linux <= 6.9; BPF JIT before 5.18"

    def alloc(self, cpu: int, size: int, kind: str):
        area = yield from self.sim.vmalloc.vmalloc(
            cpu, size, range_="modules", flags=VM_FLUSH_RESET_PERMS
        )
        if area is None:
            return None
        return ExecAlloc(area.addr, size, 12, kind, handle=area)

    def free(self, cpu: int, alloc: ExecAlloc):
        yield from self.sim.vmalloc.vfree(cpu, alloc.handle)
