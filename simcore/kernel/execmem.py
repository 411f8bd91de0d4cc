"""mm/execmem.c: the interface between the kernel's users of executable
memory and whoever provides it.

The module loader (:mod:`simcore.kernel.module`), the BPF JIT
(:mod:`simcore.kernel.bpf.core`) and trampolines ask for memory by
``execmem_type`` (``Kind`` here: ``enum mod_mem_type`` of 6.4+ plus the
execmem users) and get an :class:`ExecAlloc` back. Which allocator answers
is the policy under comparison: a strategy implements
:class:`ExecAllocator`, and the engine plugs it into the kernel
(``Kernel.exec_alloc``), as ``execmem_arch_setup()`` fills
``execmem_info`` on a real kernel. The kernel paths call, in order::

    alloc -> write -> finalize      (load)
    update                          (live image change, e.g. a dispatcher)
    free                            (unload)

Every method is a SimPy generator run on a CPU that returns its result
with ``return`` (callers use ``yield from``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SHIFT

# enum mod_mem_type (kernel/module, 6.4+) plus the execmem users
Kind = Literal[
    "module_text",
    "module_data",
    "module_rodata",
    "module_ro_after_init",
    "module_init_text",
    "module_init_data",
    "module_init_rodata",
    "bpf_prog",
    "bpf_trampoline",
    "kprobe",
    "ftrace",
]
TEXT_KINDS = frozenset(
    {
        "module_text",
        "module_init_text",
        "bpf_prog",
        "bpf_trampoline",
        "kprobe",
        "ftrace",
    }
)

# ro_after_init turns read-only after the module's init has run
RO_KINDS = frozenset({"module_rodata", "module_init_rodata", "module_ro_after_init"})


@dataclass(slots=True)
class ExecAlloc:
    """An object's bytes: where, how big, under which mapping size.

    ``page_shift`` is the smallest mapping over the bytes. Where a huge
    mapping was demoted for part of the object only (CPA splitting the one
    PMD a partial ``set_memory_*()`` range ends in), ``pmd_shifts`` gives
    the mapping of each PMD the bytes span, first to last, and the touches
    follow it PMD by PMD: the rest of the object stays huge-mapped.
    """

    addr: int
    size: int  # bytes the caller asked for
    kind: str
    page_shift: int = PAGE_SHIFT  # mapping covering it: 12, 21 or 30
    footprint: int = 0  # bytes set aside for it alone (0 when shared)
    handle: Any = None  # the allocator's own bookkeeping
    pmd_shifts: tuple[int, ...] | None = None  # per PMD, when they differ
    gen: int = 0  # bumped by every remap, for callers that cached touches
    _touch: np.ndarray | None = field(default=None, repr=False)
    _shifts: np.ndarray | None = field(default=None, repr=False)

    def remap(self, page_shift: int, pmd_shifts: tuple[int, ...] | None = None) -> None:
        """The bytes now sit under other mappings: forget the touches."""
        self.page_shift = page_shift
        self.pmd_shifts = pmd_shifts
        self.gen += 1
        self._touch = self._shifts = None

    def touches(self) -> np.ndarray:
        """Addresses of the pages (of their mapping size) the bytes span."""
        if self._touch is None:
            end = self.addr + max(1, self.size)
            if self.pmd_shifts is None:
                self._touch = _pages(self.addr, end, self.page_shift)
                self._shifts = None
            else:
                parts = []
                pmd = self.addr >> PMD_SHIFT
                for i, s in enumerate(self.pmd_shifts):
                    lo = max(self.addr, (pmd + i) << PMD_SHIFT)
                    hi = min(end, (pmd + i + 1) << PMD_SHIFT)
                    a = _pages(lo, hi, s)
                    parts.append((a, np.full(len(a), s, np.uint8)))
                self._touch = np.concatenate([a for a, _ in parts])
                self._shifts = np.concatenate([s for _, s in parts])
        return self._touch

    def touch_shifts(self) -> np.ndarray:
        """The mapping shift of each of :meth:`touches` (uint8)."""
        t = self.touches()
        if self._shifts is None:
            self._shifts = np.full(len(t), self.page_shift, np.uint8)
        return self._shifts

    def shift_at(self, addrs: np.ndarray) -> np.ndarray | int:
        """The mapping shift at each of ``addrs`` (inside the object): one
        int when the whole object has one mapping."""
        if self.pmd_shifts is None:
            return self.page_shift
        table = np.array(self.pmd_shifts, np.uint8)
        first = np.uint64(self.addr >> PMD_SHIFT)
        return table[((addrs >> np.uint64(PMD_SHIFT)) - first).astype(np.int64)]


def _pages(lo: int, hi: int, shift: int) -> np.ndarray:
    """Page addresses of size ``1 << shift`` covering ``[lo, hi)``."""
    first, last = lo >> shift, (hi - 1) >> shift
    return np.arange(first, last + 1, dtype=np.uint64) << np.uint64(shift)


def bpf_jit_image_size(proglen: int) -> int:
    """Bytes bpf_jit_binary_alloc() asks for: a program plus its header and
    at least 128 bytes of random padding, rounded up to pages
    (kernel/bpf/core.c)."""
    return -(-(proglen + 8 + 128) // PAGE) * PAGE


class ExecAllocator(Protocol):
    """What the kernel calls on the executable-memory provider."""

    domain: str

    def bpf_image_size(self, proglen: int) -> int: ...
    def alloc(self, cpu: int, size: int, kind: str): ...
    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1): ...
    def finalize(self, cpu: int, obj: ExecAlloc): ...
    def update(self, cpu: int, obj: ExecAlloc, nbytes: int): ...
    def free(self, cpu: int, obj: ExecAlloc): ...
    def shrink_request(self, obj: ExecAlloc, nbytes: int) -> None: ...
