"""mm/util.c: kvmalloc_node() / kvfree(), and vzalloc() beside them.

The buffers the executable-memory paths write before copying into
read-only text: the BPF JIT's RW image (``bpf_jit_binary_pack_alloc()``
kvmalloc()s it) and the module loader's writable copy of ROX text
(``vzalloc()``). A :class:`Shadow` says where the buffer came from so
:func:`kvfree` gives it back the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.constants import PAGE
from simcore.kernel.page_alloc import GFP_NORETRY, MAX_PAGE_ORDER
from simcore.kernel.vmalloc import VmArea

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# include/linux/slab.h: the largest kmalloc() served by a slab cache
# (order-1 with SLUB and 4 KiB pages)
KMALLOC_MAX_CACHE_SIZE = 2 * PAGE


@dataclass(slots=True)
class Shadow:
    kind: str  # "slab", "pages" or "vmalloc"
    size: int
    pfn: int = -1
    order: int = 0
    area: VmArea | None = None


def kvmalloc(kernel: Kernel, cpu: int, size: int, fill_ns: float = 0.0):
    """kvmalloc(): kmalloc() (slab up to KMALLOC_MAX_CACHE_SIZE, whole
    pages above, tried with __GFP_NORETRY), else vmalloc(). ``fill_ns``:
    what the caller writes into it at once (the JIT's fill of illegal
    instructions). Returns the Shadow, or None: no memory."""
    env = kernel.env
    if size <= KMALLOC_MAX_CACHE_SIZE:
        slab = kernel.profile.kernel_costs.slab_alloc_ns.value
        yield env.timeout(int(slab + fill_ns))
        return Shadow("slab", size)
    order = (-(-size // PAGE) - 1).bit_length()
    pfn = None
    if order <= MAX_PAGE_ORDER:  # else past KMALLOC_MAX_SIZE: kmalloc fails
        # kvmalloc_node(): above a page kmalloc() tries with __GFP_NORETRY,
        # vmalloc() being the fallback
        pfn = yield from kernel.page_alloc.alloc_pages(cpu, order, gfp=GFP_NORETRY)
    if pfn is not None:
        yield env.timeout(int(fill_ns))
        return Shadow("pages", size, pfn=pfn, order=order)
    area = yield from kernel.vmalloc.vmalloc(cpu, size, caller="kvmalloc")
    if area is None:
        return None
    yield env.timeout(int(fill_ns))
    return Shadow("vmalloc", size, area=area)


def vzalloc(kernel: Kernel, cpu: int, size: int):
    """vzalloc() (mm/vmalloc.c): zeroed vmalloc memory, as a Shadow."""
    area = yield from kernel.vmalloc.vmalloc(cpu, size, zero=True, caller="vzalloc")
    return None if area is None else Shadow("vmalloc", size, area=area)


def kvfree(kernel: Kernel, cpu: int, buf: Shadow):
    """kvfree(): back to where kvmalloc()/vzalloc() took it from."""
    if buf.kind == "slab":
        yield kernel.env.timeout(int(kernel.profile.kernel_costs.slab_alloc_ns.value))
    elif buf.kind == "pages":
        yield from kernel.page_alloc.free_pages(cpu, buf.pfn, buf.order)
    else:
        yield from kernel.vmalloc.vfree(cpu, buf.area)
