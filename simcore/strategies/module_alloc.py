"""``module_alloc``: one vmalloc area per allocation in the module range.

Models arch/x86/kernel/module.c ``module_alloc()`` before execmem (v6.10):
``__vmalloc_node_range(size, MODULE_ALIGN, MODULES_VADDR + offset,
MODULES_END, GFP_KERNEL, PAGE_KERNEL, VM_FLUSH_RESET_PERMS, ...)``, which
was also the BPF JIT's allocator before bpf_prog_pack (v5.18):
``bpf_jit_binary_alloc()`` gives every program at least one page of its
own. The image is written through the RW mapping with plain stores, then
``set_memory_rox()`` (``set_memory_ro()`` + ``set_memory_x()`` before
v6.2) makes it executable: a CPA on the vmalloc range *and* on its
direct-map alias, which splits 1G/2M direct-map pages as programs load and
flushes every CPU. Freeing goes through ``vfree()`` with
``VM_FLUSH_RESET_PERMS``: the alias is invalidated and the range flushed
at once.
"""

from __future__ import annotations

from simcore.constants import PAGE, PAGE_SHIFT
from simcore.kernel.vmalloc import VM_FLUSH_RESET_PERMS
from simcore.strategies.base import ALWAYS, ExecAlloc, Strategy


class ModuleAlloc(Strategy):
    name = "module_alloc"
    first_release = ALWAYS
    release_source = (
        "module_alloc() predates every preset (it is in v2.6.12, the first "
        "release in git history, release inferred); execmem_alloc() (v6.10) "
        "keeps its per-allocation vmalloc wherever no ROX cache is set up"
    )
    summary = "per-allocation vmalloc in the module range, 4K pages"
    models = "module_alloc(), Linux <= 6.9; BPF JIT before 5.18"
    vm_flags = VM_FLUSH_RESET_PERMS
    core_layout = True

    def alloc(self, cpu: int, size: int, kind: str):
        """module_alloc() / bpf_jit_binary_alloc()."""
        area = yield from self.kernel.vmalloc.vmalloc(
            cpu,
            size,
            range_=self.kernel.execmem_range(kind),
            flags=self.vm_flags,
            caller=kind,
        )
        if area is None:
            return None
        footprint = area.nr_pages * PAGE
        self.account(size, footprint)
        return ExecAlloc(area.addr, size, kind, area.page_shift, footprint, handle=area)

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        """Section copies and relocations: plain stores, the area is RW."""
        yield self.env.timeout(int(self.copy_ns(nbytes, writes)))

    def finalize(self, cpu: int, obj: ExecAlloc):
        """module_enable_text_rox() / bpf_jit_binary_lock_ro()."""
        area = obj.handle
        yield from self.protect(cpu, area.addr, area.nr_pages, obj.kind)

    def protect_layout(self, cpu: int, obj: ExecAlloc, fn: str, addr: int, npages: int):
        """One of the pre-6.4 loader's frob_*() calls (module_enable_ro(),
        _nx(), _x()) over part of ``obj``: ``set_memory_<fn>`` as named."""
        yield from getattr(self.kernel.cpa, fn)(cpu, addr, npages)

    def free(self, cpu: int, obj: ExecAlloc):
        """module_memfree() / bpf_jit_binary_free(): vfree()."""
        area = obj.handle
        self.account(-obj.size, -obj.footprint)
        yield from self.kernel.vmalloc.vfree(cpu, area)
        # the area's pages are back: a later mapping may differ
        obj.remap(PAGE_SHIFT)
