"""include/linux/vmalloc.h and mm/vmalloc.c: the area types every part shares.

``struct vm_struct`` flags (``VM_*``), ``vmap_area->flags`` sub-types
(``VMAP_RAM``, ``VMAP_BLOCK``), and :class:`VmArea`, one ``struct
vmap_area`` with its ``vm_struct``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simcore.constants import PAGE_SHIFT

# include/linux/vmalloc.h vm_struct flags
VM_IOREMAP = 0x1
VM_ALLOC = 0x2
VM_MAP = 0x4
VM_USERMAP = 0x8
VM_DMA_COHERENT = 0x10
VM_NO_GUARD = 0x40
VM_FLUSH_RESET_PERMS = 0x100
VM_ALLOW_HUGE_VMAP = 0x400  # v5.18+ (559089e0a93d); opt-in huge mappings
VM_SPARSE = 0x1000
# v5.13-v5.17 had the opposite, VM_NO_HUGE_VMAP (also 0x400): huge was the
# default where the arch allowed it. The model gives it a bit of its own so
# a strategy can ask for huge and still be vetoed, as modules were.
VM_NO_HUGE_VMAP = 1 << 30
# mm/vmalloc.c vmap_area->flags sub-types
VMAP_RAM = 0x1
VMAP_BLOCK = 0x2


@dataclass(slots=True, eq=False)
class VmArea:
    """struct vmap_area with its vm_struct (``has_vm``) when it has one."""

    addr: int
    size: int  # bytes of KVA, guard page included
    nr_pages: int  # pages backing it (no guard)
    node: int  # vmap_node that allocated it (decode_vn_id), -1 for none
    flags: int  # vm_struct flags
    range: str
    va_flags: int = 0  # VMAP_RAM | VMAP_BLOCK
    has_vm: bool = True
    caller: str | None = None
    phys: int | None = None
    numa: tuple[tuple[int, int], ...] = ()
    pages: list[int] = field(default_factory=list)  # pfns, vm->pages
    page_shift: int = PAGE_SHIFT  # vm->page_order + PAGE_SHIFT

    @property
    def end(self) -> int:
        return self.addr + self.size
