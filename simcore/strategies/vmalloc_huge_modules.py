"""``vmalloc_huge_modules``: module_alloc() allowed huge vmalloc mappings.

Models x86 in v5.18-rc1, where fac54e2bfb5b ("x86/Kconfig: select
HAVE_ARCH_HUGE_VMALLOC with HAVE_ARCH_HUGE_VMAP",
20220204185742.271030-2-song@kernel.org) made every vmalloc() of at
least a PMD per node huge unless the caller passed ``VM_NO_HUGE_VMAP``,
and ``module_alloc()`` did not pass it. ``__vmalloc_node_range()`` with
``NUMA_NO_NODE`` divides the size by ``num_online_nodes()`` before the
PMD test (until v6.13: the preset's ``kernel.vmalloc_huge_per_node``, which
vmalloc applies, ``Vmalloc.huge_fits()``), aligns the area to 2 MiB and
rounds its size up to whole PMDs.

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

Both strategies run the rc1 kernel's vmalloc, huge by default for every
caller (``Vmalloc.huge_by_default``): a large BPF map or any other
vmalloc() of a PMD per node is 2M-mapped too, where from v5.18 only the
``vmalloc_huge()`` callers (system hashes) are. That is where
``vmalloc_huge_modules_nohuge`` and ``module_alloc`` differ.

Huge mappings need a kernel with HAVE_ARCH_HUGE_VMALLOC
(``kernel.huge_vmalloc``, presets 5.18 and later on x86): on an older
preset set ``huge_vmalloc: true`` beside it for the v5.18-rc1 kernel this
models, or every mapping is 4K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SHIFT
from simcore.kernel.vmalloc import (
    VM_ALLOW_HUGE_VMAP,
    VM_FLUSH_RESET_PERMS,
    VM_NO_HUGE_VMAP,
)
from simcore.strategies.base import ExecAlloc
from simcore.strategies.module_alloc import ModuleAlloc

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


def pmd_shifts(kernel: Kernel, addr: int, size: int) -> list[int]:
    """The mapping of each PMD over ``[addr, addr + size)``, first to last:
    CPA splits only the PMD a partial range ends in, so one object can sit
    under 2M mappings and, in its tail PMD, 4K ones."""
    pt = kernel.pagetables
    first = addr >> PMD_SHIFT
    last = (addr + max(1, size) - 1) >> PMD_SHIFT
    return [
        pt.page_shift(max(addr, p << PMD_SHIFT)) or PAGE_SHIFT
        for p in range(first, last + 1)
    ]


def follow_mapping(kernel: Kernel, obj: ExecAlloc) -> None:
    """Record the mappings the object's bytes now sit under, PMD by PMD
    where they differ (the demoted PMD in 4K pages, the rest huge)."""
    shifts = pmd_shifts(kernel, obj.addr, obj.size)
    low = min(shifts)
    mixed = tuple(shifts) if max(shifts) != low else None
    if low != obj.page_shift or mixed != obj.pmd_shifts:
        obj.remap(low, mixed)


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
        # the rc1 kernel's vmalloc: huge for every caller of a PMD per node
        # or more unless it passes VM_NO_HUGE_VMAP (BPF maps, XFS buffers,
        # ...), not only for vmalloc_huge() callers as from v5.18
        kernel.vmalloc.huge_by_default = True
        # pages asked for, by area address: the area itself may be larger
        self.asked: dict[int, int] = {}

    def alloc(self, cpu: int, size: int, kind: str):
        """module_alloc(): __vmalloc_node_range(), huge where it fits."""
        flags = self.vm_flags
        if not self.kernel.vmalloc.huge_fits(size):
            # too small for a PMD (per node until v6.13): 4K, whatever
            # vmalloc's default
            flags = (flags & ~VM_ALLOW_HUGE_VMAP) | VM_NO_HUGE_VMAP
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

    def protect_layout(self, cpu: int, obj: ExecAlloc, fn: str, addr: int, npages: int):
        """A pre-6.4 frob_*() call over part of a layout: a part ending
        inside a PMD splits that PMD."""
        yield from super().protect_layout(cpu, obj, fn, addr, npages)
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
