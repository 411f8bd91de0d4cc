"""The test cases of lib/test_vmalloc.c, as SimPy generators.

Each case runs on a worker's CPU through the modelled kernel and returns 0
when it passed and -1 when an allocation failed, as the kernel's
``*_test()`` functions do. Between an allocation and its free the kernel
writes the first byte (``*((__u8 *)ptr) = 0``); that store goes through
the worker CPU's dTLB (``Worker.write``): a fresh mapping's address misses
and walks, unless an earlier area there is still cached.

``setup_scale`` (a simulator option, 1.0 = the kernel) shrinks the
15,000 and ``fls(cpus) * 8192`` areas that long_busy_list and full_fit
allocate before their loops, which dominate their time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simcore.constants import PAGE, PAGE_SHIFT
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel
    from simcore.workloads.vmalloc_stress import Worker

# THREAD_ALIGN per architecture, without KASAN and with 4 KiB pages; the
# alignment of fix_align_alloc_test() is THREAD_ALIGN << 1.
# - x86-64: THREAD_SIZE = PAGE_SIZE << THREAD_SIZE_ORDER, THREAD_SIZE_ORDER
#   = 2 + KASAN_STACK_ORDER (arch/x86/include/asm/page_64_types.h), 16 KiB;
#   x86 defines no THREAD_ALIGN, so include/linux/thread_info.h's fallback
#   "#define THREAD_ALIGN THREAD_SIZE" applies: 16 KiB, aligned to 32 KiB.
# - arm64: THREAD_SIZE = 1 << THREAD_SHIFT, MIN_THREAD_SHIFT = 14 +
#   KASAN_THREAD_SHIFT, 16 KiB; "#ifdef CONFIG_VMAP_STACK #define
#   THREAD_ALIGN (2 * THREAD_SIZE)" (arch/arm64/include/asm/memory.h), and
#   VMAP_STACK is default y (arch/Kconfig) where the architecture selects
#   HAVE_ARCH_VMAP_STACK, as arm64 does: 32 KiB, aligned to 64 KiB.
THREAD_ALIGN = {"x86_64": 16 << 10, "arm64": 32 << 10}
# long_busy_list_alloc_test(): 15,000 one-page areas kept busy
BUSY_LIST_LEN = 15_000
# full_fit_alloc_test(): fls(num_online_cpus()) * (32 MiB / PAGE_SIZE) pairs
FULL_FIT_PER_FLS = (32 << 20) // PAGE
POINTER = 8


def _one(w: Worker, nbytes: int, **kw):
    """vmalloc + write byte 0 + vfree; False when the vmalloc failed."""
    area = yield from w.vm.vmalloc(w.cpu, nbytes, **kw)
    if area is None:
        return False
    yield w.env.timeout(w.write(area.addr, area.page_shift))
    yield from w.vm.vfree(w.cpu, area)
    return True


def _aligned(w: Worker, nbytes: int, align: int):
    """__vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO) + vfree."""
    area = yield from w.vm.vmalloc(w.cpu, nbytes, align=max(PAGE, align), zero=True)
    if area is None:
        return False
    yield from w.vm.vfree(w.cpu, area)
    return True


def _loop(w: Worker, once):
    """``once()`` test_loop_count times; -1 as soon as one round fails."""
    for _ in range(w.cfg.test_loop_count):
        if not (yield from once()):
            return -1
        yield from w.loop_done()
    return 0


def fix_size_alloc_test(w: Worker):
    flags = VM_ALLOW_HUGE_VMAP if w.cfg.use_huge else 0
    lo, hi = w.cfg.nr_pages, w.cfg.max_pages or w.cfg.nr_pages
    vm, cpu, env = w.vm, w.cpu, w.env
    # _loop() and _one() written out: every SimPy resume of this loop passes
    # through each generator frame stacked above vmalloc's own, and this is
    # the event-heavy benchmark's loop
    for _ in range(w.cfg.test_loop_count):
        pages = lo if lo == hi else w.draw(lo, hi)
        area = yield from vm.vmalloc(cpu, pages * PAGE, flags=flags)
        if area is None:
            return -1
        yield env.timeout(w.write(area.addr, area.page_shift))
        yield from vm.vfree(cpu, area)
        yield from w.loop_done()
    return 0


def full_fit_alloc_test(w: Worker):
    junk = w.scaled(w.kernel.nr_cpus.bit_length() * FULL_FIT_PER_FLS)
    vm, cpu = w.vm, w.cpu
    arrays = []
    for _ in range(2):
        a = yield from vm.vmalloc(cpu, max(1, junk) * POINTER)
        if a is None:
            for b in arrays:
                yield from vm.vfree(cpu, b)
            return -1
        arrays.append(a)
    keep, holes = [], []
    for _ in range(junk):
        keep.append((yield from vm.vmalloc(cpu, PAGE)))
        holes.append((yield from vm.vmalloc(cpu, PAGE)))
    for a in holes:
        if a is not None:
            yield from vm.vfree(cpu, a)
    rv = 0
    for _ in range(w.cfg.test_loop_count):
        if not (yield from _one(w, PAGE)):
            rv = -1
            break
        yield from w.loop_done()
    for a in keep + arrays:
        if a is not None:
            yield from vm.vfree(cpu, a)
    return rv


def long_busy_list_alloc_test(w: Worker):
    n = w.scaled(BUSY_LIST_LEN)
    vm, cpu = w.vm, w.cpu
    arr = yield from vm.vmalloc(cpu, max(1, n) * POINTER)
    if arr is None:
        return -1
    busy = []
    for _ in range(n):
        busy.append((yield from vm.vmalloc(cpu, PAGE)))
    rv = 0
    for _ in range(w.cfg.test_loop_count):
        a1 = yield from vm.vmalloc(cpu, 100 * PAGE)
        if a1 is None:
            rv = -1
            break
        a2 = yield from vm.vmalloc(cpu, PAGE)
        if a2 is None:
            yield from vm.vfree(cpu, a1)
            rv = -1
            break
        ns = w.write(a1.addr, a1.page_shift) + w.write(a2.addr, a2.page_shift)
        yield w.env.timeout(ns)
        yield from vm.vfree(cpu, a1)
        yield from vm.vfree(cpu, a2)
        yield from w.loop_done()
    for a in busy:
        if a is not None:
            yield from vm.vfree(cpu, a)
    yield from vm.vfree(cpu, arr)
    return rv


def random_size_alloc_test(w: Worker):
    return (yield from _loop(w, lambda: _one(w, w.draw(1, 100) * PAGE)))


def fix_align(kernel: Kernel) -> int:
    """THREAD_ALIGN << 1 for the kernel's architecture."""
    return THREAD_ALIGN[kernel.layout.arch] << 1


def fix_align_alloc_test(w: Worker):
    align = fix_align(w.kernel)
    return (yield from _loop(w, lambda: _aligned(w, 5 * PAGE, align)))


def random_size_align_alloc_test(w: Worker):
    def once():
        rnd = w.draw(0, 255)  # get_random_u8()
        return (yield from _aligned(w, (rnd % 10 + 1) * PAGE, 1 << (rnd % 23)))

    return (yield from _loop(w, once))


def align_shift_alloc_test(w: Worker):
    """Expected to fail: alignments up to 2^63 cannot all be met."""
    for i in range(64):
        if not (yield from _aligned(w, PAGE, 1 << i)):
            return -1
    return 0


def vm_map_ram_test(w: Worker):
    """Pages bulk-allocated once, then vm_map_ram/write/vm_unmap_ram."""
    kernel, vm, cpu = w.kernel, w.vm, w.cpu
    lo, hi = w.cfg.nr_pages, w.cfg.max_pages or w.cfg.nr_pages
    pages: list[int] = []
    while len(pages) < hi:
        got = yield from kernel.page_alloc.alloc_pages_bulk(cpu, hi - len(pages))
        if not got:
            break
        pages.extend(got)
    rv = 0 if len(pages) == hi else -1
    if not rv:
        for _ in range(w.cfg.test_loop_count):
            n = lo if lo == hi else w.draw(lo, hi)
            addr = yield from vm.vm_map_ram(cpu, pages[:n])
            if addr is None:
                rv = -1
                break
            yield w.env.timeout(w.write(addr, PAGE_SHIFT))
            yield from vm.vm_unmap_ram(cpu, addr, n)
            yield from w.loop_done()
    if pages:
        yield from kernel.page_alloc.free_pages_batch(cpu, pages)
    return rv


@dataclass(frozen=True)
class Case:
    bit: int
    name: str
    run: Callable


# test_case_array[] of lib/test_vmalloc.c: index i is mask bit 1 << i
CASES = (
    Case(1 << 0, "fix_size_alloc_test", fix_size_alloc_test),
    Case(1 << 1, "full_fit_alloc_test", full_fit_alloc_test),
    Case(1 << 2, "long_busy_list_alloc_test", long_busy_list_alloc_test),
    Case(1 << 3, "random_size_alloc_test", random_size_alloc_test),
    Case(1 << 4, "fix_align_alloc_test", fix_align_alloc_test),
    Case(1 << 5, "random_size_align_alloc_test", random_size_align_alloc_test),
    Case(1 << 6, "align_shift_alloc_test", align_shift_alloc_test),
    Case(1 << 10, "vm_map_ram_test", vm_map_ram_test),
)
# pcpu_alloc_test (128), the kvfree_rcu tests (256, 512), no_block_alloc
# (2048) and vrealloc (4096) exercise allocators this simulator does not model
UNMODELLED = {
    1 << 7: "pcpu_alloc_test",
    1 << 8: "kvfree_rcu_1_arg_vmalloc_test",
    1 << 9: "kvfree_rcu_2_arg_vmalloc_test",
    1 << 11: "no_block_alloc_test",
    1 << 12: "vrealloc_test",
}
