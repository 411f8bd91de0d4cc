"""``vmalloc_huge_modules``: module_alloc() allowed huge vmalloc mappings.

Models x86 in v5.18-rc1, where fac54e2bfb5b ("x86/Kconfig: select
HAVE_ARCH_HUGE_VMALLOC with HAVE_ARCH_HUGE_VMAP",
20220204185742.271030-2-song@kernel.org) made every vmalloc() of at
least a PMD per node huge unless the caller passed ``VM_NO_HUGE_VMAP``,
and ``module_alloc()`` did not pass it. ``__vmalloc_node_range()`` with
``NUMA_NO_NODE`` divides the size by ``num_online_nodes()`` before the
PMD test, aligns the area to 2 MiB and rounds its size up to whole PMDs.

Rick Edgecombe's review (5bd16e2c06a2df357400556c6ae01bb5d3c5c32a.camel@
intel.com) named the two costs modelled here: CPA splits the 2 MiB vmalloc
mapping when ``set_memory_*()`` covers only part of it (module text whose
size is not a multiple of 2 MiB: the tail PMD becomes 512 PTEs), and the
``VM_FLUSH_RESET_PERMS`` reset in ``vfree()`` toggles the direct-map alias
page by page, splitting the 2 MiB alias that ``set_memory_rox()`` had kept
whole. He suggested ``VM_NO_HUGE_VMAP`` for regular module allocations;
the debate ended with 559089e0a93d (20220411233549.740157-1-song@
kernel.org), which turned huge vmalloc into an opt-in
(``VM_ALLOW_HUGE_VMAP``) that ``module_alloc()`` does not take.

``vmalloc_huge_modules_nohuge`` is the same allocator with modules opting
out, as powerpc's ``module_alloc()`` did (20210317062402.533919-15-
npiggin@gmail.com) and Kefeng Wang proposed for x86 and arm64
(20211227145903.187152-1-wangkefeng.wang@huawei.com).

Allocations smaller than a PMD per node are 4K-mapped either way: BPF
programs and most modules (Rik van Riel in the module_alloc_huge thread:
no module on his system was large enough to use a whole huge page).

Huge mappings need a kernel with HAVE_ARCH_HUGE_VMALLOC
(``kernel.huge_vmalloc``, presets 5.18 and later on x86): on an older
preset set ``huge_vmalloc: true`` beside it for the v5.18-rc1 kernel this
models, or every mapping is 4K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SIZE
from simcore.kernel.vmalloc import (
    VM_ALLOW_HUGE_VMAP,
    VM_FLUSH_RESET_PERMS,
    VM_NO_HUGE_VMAP,
)
from simcore.strategies.base import ExecAlloc
from simcore.strategies.module_alloc import ModuleAlloc

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


def huge_fits(kernel: Kernel, size: int) -> bool:
    """__vmalloc_node_range() with NUMA_NO_NODE: huge only when
    ``size / num_online_nodes()`` reaches a PMD."""
    return size // max(1, len(kernel.page_alloc.buddy.zones)) >= PMD_SIZE


def mapping_shift(kernel: Kernel, addr: int, size: int) -> int:
    """The smallest mapping size over ``[addr, addr + size)``: what one
    page_shift per object can honestly say once CPA has split part of a
    huge mapping (the split part needs one TLB entry per 4K page)."""
    pt = kernel.pagetables
    shift = pt.page_shift(addr) or PAGE_SHIFT
    a = (addr | (PMD_SIZE - 1)) + 1
    end = addr + max(1, size)
    while a < end and shift > PAGE_SHIFT:
        shift = min(shift, pt.page_shift(a) or PAGE_SHIFT)
        a += PMD_SIZE
    return shift


def follow_mapping(kernel: Kernel, obj: ExecAlloc) -> None:
    """Record the mapping size the object's bytes now sit under."""
    shift = mapping_shift(kernel, obj.addr, obj.size)
    if shift != obj.page_shift:
        obj.page_shift = shift
        obj._touch = None


class VmallocHugeModules(ModuleAlloc):
    name = "vmalloc_huge_modules"
    first_release = None
    release_source = (
        "fac54e2bfb5b gave x86 huge vmalloc in v5.18-rc1, and 559089e0a93d "
        "'vmalloc: replace VM_NO_HUGE_VMAP with VM_ALLOW_HUGE_VMAP' (v5.18-rc3) "
        "took module_alloc() off it before v5.18: no release shipped it"
    )
    summary = "module_alloc() with huge vmalloc mappings (2M per node or more)"
    models = (
        "x86 huge vmalloc for module_alloc(), v5.18-rc1 (fac54e2bfb5b, "
        "20220204185742.271030-2-song@kernel.org) until 559089e0a93d "
        "(20220411233549.740157-1-song@kernel.org)"
    )
    vm_flags = VM_FLUSH_RESET_PERMS | VM_ALLOW_HUGE_VMAP

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        # pages asked for, by area address: the area itself may be larger
        self.asked: dict[int, int] = {}

    def alloc(self, cpu: int, size: int, kind: str):
        """module_alloc(): __vmalloc_node_range(), huge where it fits."""
        flags = self.vm_flags
        if not huge_fits(self.kernel, size):
            flags &= ~VM_ALLOW_HUGE_VMAP
        area = yield from self.kernel.vmalloc.vmalloc(
            cpu, size, range_=self.kernel.execmem_range(kind), flags=flags, caller=kind
        )
        if area is None:
            return None
        footprint = area.nr_pages * PAGE
        self.account(size, footprint)
        self.asked[area.addr] = -(-size // PAGE)
        return ExecAlloc(area.addr, size, kind, area.page_shift, footprint, handle=area)

    def finalize(self, cpu: int, obj: ExecAlloc):
        """module_enable_text_rox() / module_enable_rodata_ro() over the
        object's own pages (``PAGE_ALIGN(size)``, not the PMD-rounded
        area): a partial PMD is split."""
        area = obj.handle
        yield from self.protect(cpu, area.addr, self.asked[area.addr], obj.kind)
        follow_mapping(self.kernel, obj)

    def free(self, cpu: int, obj: ExecAlloc):
        """vfree(): VM_FLUSH_RESET_PERMS resets the alias page by page."""
        self.asked.pop(obj.handle.addr, None)
        yield from super().free(cpu, obj)


class VmallocHugeModulesNoHuge(VmallocHugeModules):
    name = "vmalloc_huge_modules_nohuge"
    first_release = None
    release_source = (
        "on x86 never: module_alloc() with VM_NO_HUGE_VMAP under huge vmalloc "
        "was proposed (20211227145903.187152-1-wangkefeng.wang@huawei.com) and "
        "shipped on powerpc only (v5.13); the model is x86"
    )
    summary = "huge vmalloc on, module_alloc() opting out with VM_NO_HUGE_VMAP"
    models = (
        "huge vmalloc by default, module_alloc() passing VM_NO_HUGE_VMAP: "
        "powerpc since v5.13 (20210317062402.533919-15-npiggin@gmail.com), "
        "proposed for x86 (20211227145903.187152-1-wangkefeng.wang@huawei.com)"
    )
    vm_flags = VM_FLUSH_RESET_PERMS | VM_ALLOW_HUGE_VMAP | VM_NO_HUGE_VMAP
