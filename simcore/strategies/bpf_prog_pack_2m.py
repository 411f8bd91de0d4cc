"""``bpf_prog_pack_2m``: bpf_prog_pack with each pack on a 2 MiB mapping.

The pack as merged for v5.18 (57631054fae6) was 2 MiB-mapped only while
x86 vmalloc was huge by default; once huge vmalloc became opt-in
(``VM_ALLOW_HUGE_VMAP``, 20220411233549.740157-1-song@kernel.org) the packs
fell back to 4K pages, and the "bpf_prog_pack followup" series
(20220520235758.1858153-1-song@kernel.org, v6
20220707223546.4124919-1-song@kernel.org) brought the mapping back with
``module_alloc_huge()``. That is what this models:

- packs of ``PMD_SIZE * num_online_nodes()`` (``select_bpf_prog_pack_size()``
  with ``huge_vmalloc_supported()``) from ``module_alloc_huge()``: vmalloc
  in the module range with ``VM_ALLOW_HUGE_VMAP``, 2M leaves when order-9
  pages are free, else 4K pages (``vmalloc.huge_fallbacks``);
- ``set_vm_flush_reset_perms()`` dropped, because ``VM_FLUSH_RESET_PERMS``
  did not work with huge mappings (Rick Edgecombe in the same thread); a
  pack, or a program larger than a pack, is freed with ``set_memory_nx()``
  and ``set_memory_rw()`` before ``module_memfree()``.

Everything else (chunks, ``pack_mutex``, the RW shadow and
``text_poke_copy()``, INT3 on free) is :class:`BpfProgPack`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.constants import PMD_SIZE
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP, VmArea
from simcore.strategies.bpf_prog_pack import BpfProgPack, nr_numa_nodes

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel


class BpfProgPack2M(BpfProgPack):
    name = "bpf_prog_pack_2m"
    arches = ("x86_64",)
    arch_reason = "arm64 change_memory_common() refuses to change the permissions of a huge (PMD) mapping, which set_memory_rox() of a 2M pack asks for"
    first_release = None
    release_source = (
        "module_alloc_huge() (20220520235758.1858153-1-song@kernel.org) was "
        "never merged: no release mapped packs with 2M pages"
    )
    summary = "bpf_prog_pack with each pack on a 2M mapping (module_alloc_huge)"
    models = (
        "bpf_prog_pack of v5.18-rc (57631054fae6) with module_alloc_huge from "
        "the followup 20220520235758.1858153-1-song@kernel.org (not merged)"
    )
    # module_alloc_huge(); no VM_FLUSH_RESET_PERMS
    pack_vm_flags = VM_ALLOW_HUGE_VMAP

    def default_pack_size(self, kernel: Kernel) -> int:
        """Huge packs in every era: PMD_SIZE per node, as
        select_bpf_prog_pack_size() chose when module_alloc() was huge."""
        return PMD_SIZE * nr_numa_nodes(kernel)

    def _exec_free(self, cpu: int, area: VmArea):
        """set_memory_nx() + set_memory_rw(), then module_memfree()."""
        cpa = self.kernel.cpa
        yield from cpa.set_memory_nx(cpu, area.addr, area.nr_pages)
        yield from cpa.set_memory_rw(cpu, area.addr, area.nr_pages)
        yield from self.kernel.vmalloc.vfree(cpu, area)
