"""arch/x86/include/asm/pgtable_types.h, as much of it as the model keeps:
the permission bits of an entry, the ``PAGE_KERNEL*`` protections, the
leaf levels (``enum pg_level``, as page shifts) and what
``lookup_address()`` finds (:class:`Mapping`).

Shared by the vmalloc-range tables (:mod:`simcore.kernel.pgtable`), the
direct map (:mod:`simcore.kernel.directmap`) and CPA
(:mod:`simcore.kernel.set_memory`).
"""

from __future__ import annotations

from dataclasses import dataclass

from simcore.constants import PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT

# Permission bits of the model (x86: _PAGE_PRESENT bit 0, _PAGE_RW bit 1,
# _PAGE_NX bit 63; _PAGE_DIRTY, _PAGE_GLOBAL and the cache bits are not
# kept, as no modelled decision depends on them).
_PAGE_PRESENT = 0x01
_PAGE_RW = 0x02
_PAGE_NX = 0x04
PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_NX
PAGE_KERNEL_RO = _PAGE_PRESENT | _PAGE_NX
PAGE_KERNEL_EXEC = _PAGE_PRESENT | _PAGE_RW
PAGE_KERNEL_ROX = _PAGE_PRESENT
# Entry states that are not leaf permissions.
_TABLE = 0x40  # points to a lower-level table
_NONE = 0x80  # pte_none(): nothing mapped

LEVEL_4K, LEVEL_2M, LEVEL_1G = PAGE_SHIFT, PMD_SHIFT, PUD_SHIFT


@dataclass(frozen=True, slots=True)
class Mapping:
    """What lookup_address() finds: the leaf's level (page shift), the pfn
    of the 4 KiB page at the address, the leaf's permission bits."""

    shift: int
    pfn: int
    flags: int

    @property
    def present(self) -> bool:
        return bool(self.flags & _PAGE_PRESENT)
