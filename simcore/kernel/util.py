"""mm/util.c: kvmalloc_node() / kvfree(), with vzalloc() and vrealloc().

The buffers the executable-memory paths write before copying into
read-only text: the BPF JIT's RW image (``bpf_jit_binary_pack_alloc()``
kvmalloc()s it) and the module loader's writable copy of ROX text
(``vzalloc()``); and the BPF verifier's working memory (``bpf_check()``
kvzalloc()s its ``struct bpf_verifier_env`` and vzalloc()s, then grows,
``env->insn_aux_data``). A :class:`Shadow` says where the buffer came from
so :func:`kvfree` gives it back the same way.

``vzalloc()`` and ``vrealloc()`` are mm/vmalloc.c's; they sit here, beside
the kvmalloc family that shares their :class:`Shadow`, and call the vmalloc
model only through its public entry points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.constants import PAGE
from simcore.kernel.page_alloc import GFP_NORETRY, MAX_PAGE_ORDER
from simcore.kernel.vmalloc import COPY_PAGE_FACTOR, VmArea

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# include/linux/slab.h: the largest kmalloc() served by a slab cache
# (order-1 with SLUB and 4 KiB pages)
KMALLOC_MAX_CACHE_SIZE = 2 * PAGE


@dataclass(slots=True)
class Shadow:
    kind: str  # "slab", "pages" or "vmalloc"
    size: int  # bytes asked for (vm->requested_size for vrealloc())
    pfn: int = -1
    order: int = 0
    area: VmArea | None = None


def kvmalloc(
    kernel: Kernel,
    cpu: int,
    size: int,
    fill_ns: float = 0.0,
    *,
    zero: bool = False,
    caller: str = "kvmalloc",
):
    """kvmalloc_node() (``__kvmalloc_node_noprof()`` in 6.x): kmalloc()
    (slab up to KMALLOC_MAX_CACHE_SIZE; above it kmalloc_large(), one
    high-order block from the page allocator, tried with __GFP_NORETRY |
    __GFP_NOWARN since the size is above a page), else vmalloc().
    ``zero`` is kvzalloc()'s __GFP_ZERO; ``fill_ns`` what the caller writes
    into it at once (the JIT's fill of illegal instructions); ``caller``
    the vmallocinfo caller of the fallback (the kvmalloc() caller's return
    address in the kernel). Returns the Shadow, or None: no memory."""
    env = kernel.env
    costs = kernel.profile.kernel_costs
    if size <= KMALLOC_MAX_CACHE_SIZE:
        # Estimate: kzalloc()'s memset of the object costs its share of a
        # zeroed page
        clear = costs.page_zero_ns.value * size / PAGE if zero else 0.0
        yield env.timeout(int(costs.slab_alloc_ns.value + clear + fill_ns))
        return Shadow("slab", size)
    order = (-(-size // PAGE) - 1).bit_length()
    pfn = None
    if order <= MAX_PAGE_ORDER:  # else past KMALLOC_MAX_SIZE: kmalloc fails
        pfn = yield from kernel.page_alloc.alloc_pages(
            cpu, order, zero=zero, gfp=GFP_NORETRY
        )
    if pfn is not None:
        yield env.timeout(int(fill_ns))
        return Shadow("pages", size, pfn=pfn, order=order)
    # the high-order attempt failed (fragmented memory): vmalloc() of the
    # same size, page by page
    kernel.metrics.inc("kvmalloc.vmalloc_fallbacks")
    area = yield from kernel.vmalloc.vmalloc(cpu, size, caller=caller, zero=zero)
    if area is None:
        return None
    yield env.timeout(int(fill_ns))
    return Shadow("vmalloc", size, area=area)


def kvzalloc(kernel: Kernel, cpu: int, size: int, *, caller: str = "kvmalloc"):
    """kvzalloc(): kvmalloc() with __GFP_ZERO."""
    return (yield from kvmalloc(kernel, cpu, size, zero=True, caller=caller))


def vzalloc(kernel: Kernel, cpu: int, size: int, *, caller: str = "vzalloc"):
    """vzalloc() (mm/vmalloc.c): zeroed vmalloc memory, as a Shadow."""
    area = yield from kernel.vmalloc.vmalloc(cpu, size, zero=True, caller=caller)
    return None if area is None else Shadow("vmalloc", size, area=area)


def kvfree(kernel: Kernel, cpu: int, buf: Shadow):
    """kvfree(): back to where kvmalloc()/vzalloc() took it from."""
    if buf.kind == "slab":
        yield kernel.env.timeout(int(kernel.profile.kernel_costs.slab_alloc_ns.value))
    elif buf.kind == "pages":
        yield from kernel.page_alloc.free_pages(cpu, buf.pfn, buf.order)
    else:
        yield from kernel.vmalloc.vfree(cpu, buf.area)


def copy_ns(kernel: Kernel, nbytes: int) -> float:
    """A memcpy()/memmove() of ``nbytes``: COPY_PAGE_FACTOR zeroed pages'
    worth per page (reads and writes each line, where zeroing only
    writes)."""
    return (
        COPY_PAGE_FACTOR
        * kernel.profile.kernel_costs.page_zero_ns.value
        * (nbytes / PAGE)
    )


def vrealloc(
    kernel: Kernel,
    cpu: int,
    buf: Shadow,
    size: int,
    *,
    zero: bool = False,
    caller: str = "vrealloc",
):
    """vrealloc() (mm/vmalloc.c ``vrealloc_node_align_noprof()`` in
    v6.18): ``buf`` resized to ``size`` bytes. The area is found with
    find_vm_area(); a shrink stays in place (the freed tail zeroed under
    __GFP_ZERO, ready for a later growth) and so does a growth that still
    fits the pages the area has (vm->requested_size moves, nothing is
    mapped); a larger growth is a new vmalloc() of ``size``, a memcpy() of
    the old requested size and a vfree() of the old area. Returns the
    Shadow (``buf`` itself when in place), or None with ``buf`` untouched
    when no memory was had."""
    vm = kernel.vmalloc
    area = buf.area
    yield from vm.find_vm_area_locked(cpu, area.addr)
    if size <= buf.size:
        if zero:
            zero_ns = kernel.profile.kernel_costs.page_zero_ns.value
            yield kernel.env.timeout(int(zero_ns * (buf.size - size) / PAGE))
        buf.size = size
        return buf
    if size <= area.nr_pages * PAGE:
        buf.size = size
        return buf
    new = yield from vm.vmalloc(cpu, size, zero=zero, caller=caller)
    if new is None:
        return None
    yield kernel.env.timeout(int(copy_ns(kernel, buf.size)))
    yield from vm.vfree(cpu, area)
    kernel.metrics.inc("vrealloc.moves")
    return Shadow("vmalloc", size, area=new)
