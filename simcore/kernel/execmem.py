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

from simcore.constants import PAGE, PAGE_SHIFT

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
    """An object's bytes: where, how big, under which mapping size."""

    addr: int
    size: int  # bytes the caller asked for
    kind: str
    page_shift: int = PAGE_SHIFT  # mapping covering it: 12, 21 or 30
    footprint: int = 0  # bytes set aside for it alone (0 when shared)
    handle: Any = None  # the allocator's own bookkeeping
    _touch: np.ndarray | None = field(default=None, repr=False)

    def touches(self) -> np.ndarray:
        """Addresses of the pages (of the mapping size) the bytes span."""
        if self._touch is None:
            s = self.page_shift
            first = self.addr >> s
            last = (self.addr + max(1, self.size) - 1) >> s
            self._touch = (np.arange(first, last + 1, dtype=np.uint64)) << np.uint64(s)
        return self._touch


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
