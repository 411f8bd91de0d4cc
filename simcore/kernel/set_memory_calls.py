"""include/linux/set_memory.h: the ``set_memory_*()`` calls every
architecture provides, each one change of permission bits over a range.

:class:`SetMemoryCalls` names them once and records each one's latency;
an architecture's class (x86's CPA in :mod:`simcore.kernel.set_memory`,
arm64's :mod:`simcore.kernel.arm64.pageattr`) supplies ``_change(cpu,
addr, numpages, mask_set, mask_clr)``, the change itself, and its own
``set_memory_rox()``. The state both
keep (the page tables, the flush model, the ``vm_unmap_aliases()`` hook)
is set up here too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from simcore.kernel.pgtable_types import _PAGE_NX, _PAGE_PRESENT, _PAGE_RW

ENOMEM = 12  # include/uapi/asm-generic/errno-base.h

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.kernel.pgtable import KernelPageTables

UnmapAliasesHook = Callable[[int], Generator[Any, Any, Any]]


class SetMemoryCalls:
    def __init__(
        self,
        kernel: Kernel,
        pagetables: KernelPageTables,
        vm_unmap_aliases: UnmapAliasesHook | None,
    ) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.pt = pagetables
        m = kernel.machine
        self.flush = m.flush
        # mm/vmalloc.c's vm_unmap_aliases() plugged in by the kernel; the
        # default stands for it with nothing lazily freed: its own
        # vmap_purge_lock, reported under the same name, excluding nothing
        self.vm_unmap_aliases: UnmapAliasesHook = (
            vm_unmap_aliases or self._vm_unmap_aliases_idle
        )
        self._purge_lock = m.mutex("vmap_purge_lock")

    def _vm_unmap_aliases_idle(self, cpu: int):
        """vm_unmap_aliases() with nothing lazily freed and no vmap blocks:
        _vm_unmap_aliases() takes vmap_purge_lock, finds nothing to purge
        or flush, and drops it."""
        yield from self._purge_lock.hold(cpu, 0)

    def _change(self, cpu, addr, numpages, mask_set, mask_clr, flags=0):
        """The architecture's change function (x86
        change_page_attr_set_clr(), arm64 change_memory_common())."""
        raise NotImplementedError  # pragma: no cover - the architecture's

    def _timed(self, op, cpu, addr, numpages, mask_set, mask_clr, flags=0):
        """One set_memory_*() call: the change, its latency as ``op``."""
        t0 = self.env.now
        ret = yield from self._change(cpu, addr, numpages, mask_set, mask_clr, flags)
        self.metrics.latency(op, self.env.now - t0)
        return ret

    def set_memory_ro(self, cpu: int, addr: int, numpages: int):
        """set_memory_ro(): clear write permission (x86 RW and Dirty;
        arm64 PTE_WRITE, set PTE_RDONLY)."""
        return (
            yield from self._timed("set_memory_ro", cpu, addr, numpages, 0, _PAGE_RW)
        )

    def set_memory_rw(self, cpu: int, addr: int, numpages: int):
        return (
            yield from self._timed("set_memory_rw", cpu, addr, numpages, _PAGE_RW, 0)
        )

    def set_memory_x(self, cpu: int, addr: int, numpages: int):
        """set_memory_x(): clear NX (x86-64 always supports NX) or PXN."""
        return (
            yield from self._timed("set_memory_x", cpu, addr, numpages, 0, _PAGE_NX)
        )

    def set_memory_nx(self, cpu: int, addr: int, numpages: int):
        return (
            yield from self._timed("set_memory_nx", cpu, addr, numpages, _PAGE_NX, 0)
        )

    def set_memory_np(self, cpu: int, addr: int, numpages: int):
        """set_memory_np(): clear Present (arm64: set_memory_valid(.., 0))."""
        return (
            yield from self._timed(
                "set_memory_np", cpu, addr, numpages, 0, _PAGE_PRESENT
            )
        )
