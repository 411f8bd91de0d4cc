"""``jitalloc``: Kent Overstreet's sub-page allocator for JIT text (2023).

Models "mm: jit/text allocator" (mm/jitalloc.c), posted in the
``__GFP_UNMAPPED`` thread on 18 May 2023 (ZGZZIM0qftr0T59b@moria.home.lan):

- eight power-of-two size classes, 16 B to 2 KiB
  (``NR_JIT_CACHES = ilog2(PAGE_SIZE / JITALLOC_MIN_SIZE)``); a request of
  ``len`` bytes goes to class ``ilog2(roundup_pow_of_two(len) / 16)``;
- every class a list of partial slabs; a slab is one page from
  ``module_alloc(PAGE_SIZE)``, made read-only and executable once with
  ``set_vm_flush_reset_perms()`` and ``set_memory_rox()``, with a bitmap
  of its objects; ``jit_cache_alloc()`` takes the first partial slab (or a
  new one) and its ``find_first_zero_bit()``; a slab becoming full leaves
  the partial list, a slab with its first object goes to its head;
- **one global mutex**, ``jit_alloc_lock``, around the class allocators
  and ``jit_free()``: a new slab's ``module_alloc()`` and CPA run with it
  held;
- larger requests: ``module_alloc(len)`` and ``set_memory_rox()`` of their
  own pages, outside the mutex;
- ``jit_update()`` = ``text_poke_copy()`` into the live mapping;
  ``jit_free()`` clears the object's bit (no invalidation of the bytes); an
  empty slab leaves its list and its page is released. The posted code
  drops the page with ``folio_put()`` while it is still vmalloc-mapped;
  the model ``vfree()``s it, after the mutex, which the release needs.

Only JIT users are served this way (BPF programs and trampolines, kprobe
and ftrace trampolines); module memory stays with ``module_alloc()``, as
the patch leaves it. The BPF JIT passes its image length as is: no
``bpf_binary_header``, no random padding (the allocator has neither).

``jitalloc_setmem`` is the update path of architectures without
``text_poke``: ``set_memory_rw()`` on the page(s), ``memcpy()``,
``set_memory_rox()``, each CPA with its ``vm_unmap_aliases()`` and a
flush on every CPU. The page is shared with other live objects, so the
model holds ``jit_alloc_lock`` across the three steps (a writer must not
find its page made read-only by another writer half way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationInfo, field_validator

from simcore.constants import PAGE, PAGE_SHIFT
from simcore.kernel.vmalloc import VM_FLUSH_RESET_PERMS, VmArea
from simcore.strategies.base import ExecAlloc
from simcore.strategies.module_alloc import ModuleAlloc
from simcore.strategies.params import StrategyParams, param, power_of_two
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

JITALLOC_MIN_SIZE = 16
MIN_SHIFT = JITALLOC_MIN_SIZE.bit_length() - 1
NR_JIT_CACHES = (PAGE // JITALLOC_MIN_SIZE).bit_length() - 1
JIT_KINDS = frozenset({"bpf_prog", "bpf_trampoline", "kprobe", "ftrace"})
BITS_PER_LONG = 64
# Estimate: find_first_zero_bit() and bitmap_weight() read the bitmap a
# long at a time, about one cycle per word (the bitmap is kcalloc()ed and
# stays in L1 under the mutex).
BITMAP_WORD_CYCLES = 1


def jit_cache_idx(length: int, min_size: int = JITALLOC_MIN_SIZE) -> int:
    """ilog2(roundup_pow_of_two(len) / 16); lengths under 16 use class 0."""
    pow2 = 1 << max(0, (length - 1).bit_length())
    return max(0, (pow2 // min_size).bit_length() - 1)


class JitParams(StrategyParams):
    """The size classes: powers of two from ``min_size`` to ``max_size``."""

    min_size: Size = param(
        JITALLOC_MIN_SIZE,
        help="smallest size class, a power of two from 8B up to max_size",
        source="mm/jitalloc.c JITALLOC_MIN_SIZE 16 (ZGZZIM0qftr0T59b@moria.home.lan)",
    )
    max_size: Size = param(
        PAGE // 2,
        help="largest size class, a power of two up to 4K; larger requests get "
        "pages of their own from module_alloc()",
        source="mm/jitalloc.c NR_JIT_CACHES = ilog2(PAGE_SIZE / "
        "JITALLOC_MIN_SIZE): classes up to PAGE_SIZE / 2",
    )

    @field_validator("min_size")
    @classmethod
    def _min(cls, v: int) -> int:
        return power_of_two(v, "min_size", 8, PAGE)

    @field_validator("max_size")
    @classmethod
    def _max(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min_size", JITALLOC_MIN_SIZE)  # at least min_size
        return power_of_two(v, "max_size", low, PAGE)


@dataclass(eq=False)
class JitSlab:
    """struct jit_slab: the page, its class and the object bitmap."""

    area: VmArea
    cache: int
    objs: int
    used: int = 0  # bitmap
    nr: int = 0

    def take(self) -> int:
        idx = (~self.used & (self.used + 1)).bit_length() - 1
        self.used |= 1 << idx
        self.nr += 1
        return idx


@dataclass(slots=True, eq=False)
class JitObj:
    slab: JitSlab
    idx: int


@dataclass
class JitCache:
    obj_size_bits: int
    objs_per_slab: int
    partial: list[JitSlab] = field(default_factory=list)  # head first


class JitAlloc(ModuleAlloc):
    name = "jitalloc"
    first_release = None
    release_source = (
        "jit/text allocator RFC (ZGZZIM0qftr0T59b@moria.home.lan), never merged"
    )
    summary = "power-of-two slots (16 B-2 KiB) in ROX pages, one mutex, text_poke"
    models = "jit/text allocator RFC, May 2023 (ZGZZIM0qftr0T59b@moria.home.lan)"
    text_poke_updates = True
    Params = JitParams
    params: JitParams

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        c = kernel.profile.kernel_costs
        self.lock = kernel.machine.mutex("jit_alloc_lock")
        # jit_alloc_init(): class i holds objects of 2^(min_shift + i) bytes
        self.min_size = self.params.min_size
        min_shift = self.min_size.bit_length() - 1
        nr = self.params.max_size.bit_length() - min_shift
        self.caches = [
            JitCache(min_shift + i, PAGE >> (min_shift + i)) for i in range(nr)
        ]
        self.slab_ns = c.slab_alloc_ns.value
        self.list_ns = c.rb_node_visit_ns.value
        self.word_ns = BITMAP_WORD_CYCLES / kernel.profile.clock_ghz.value

    def bpf_image_size(self, proglen: int) -> int:
        """jit_alloc(buf, len) takes the image as it is: no header, no pad."""
        return proglen

    def _bitmap_ns(self, cache: JitCache) -> float:
        return -(-cache.objs_per_slab // BITS_PER_LONG) * self.word_ns

    # -- slabs ---------------------------------------------------------------
    def _module_alloc_rox(self, cpu: int, size: int, kind: str):
        """module_alloc(), set_vm_flush_reset_perms(), set_memory_rox()."""
        area = yield from self.kernel.vmalloc.vmalloc(
            cpu,
            size,
            range_=self.kernel.execmem_range(kind),
            flags=VM_FLUSH_RESET_PERMS,
            caller=kind,
        )
        if area is not None:
            yield from self.kernel.cpa.set_memory_rox(cpu, area.addr, area.nr_pages)
        return area

    def _jit_slab_alloc(self, cpu: int, cache: JitCache):
        """jit_slab_alloc() (jit_alloc_lock held)."""
        area = yield from self._module_alloc_rox(cpu, PAGE, "jit_slab")
        if area is None:
            return None
        yield self.env.timeout(int(self.slab_ns))  # kcalloc() of the bitmap
        self.account(0, PAGE)
        self.metrics.inc("mem.exec.regions")
        self.metrics.inc("mem.exec.region_allocs")
        return JitSlab(area, self.caches.index(cache), cache.objs_per_slab)

    def _jit_cache_alloc(self, cpu: int, cache: JitCache):
        """jit_cache_alloc() (jit_alloc_lock held): (slab, index) or None."""
        s = cache.partial[0] if cache.partial else None
        if s is None:
            s = yield from self._jit_slab_alloc(cpu, cache)
            if s is None:
                return None
        idx = s.take()
        if s.nr == s.objs:
            cache.partial.remove(s)
        elif s.nr == 1:
            if s in cache.partial:
                cache.partial.remove(s)
            cache.partial.insert(0, s)
        # find_first_zero_bit(), __set_bit(), bitmap_weight(), list moves
        yield self.env.timeout(int(2 * self._bitmap_ns(cache) + self.list_ns))
        return JitObj(s, idx)

    # -- jit_alloc() / jit_update() / jit_free() -------------------------------
    def alloc(self, cpu: int, size: int, kind: str):
        """jit_alloc(NULL, len); other kinds go to module_alloc()."""
        if kind not in JIT_KINDS:
            return (yield from super().alloc(cpu, size, kind))
        t0 = self.env.now
        i = jit_cache_idx(size, self.min_size)
        if i >= len(self.caches):
            area = yield from self._module_alloc_rox(cpu, size, kind)
            if area is None:
                return None
            footprint = area.nr_pages * PAGE
            self.account(size, footprint)
            obj = ExecAlloc(area.addr, size, kind, PAGE_SHIFT, footprint, handle=area)
        else:
            cache = self.caches[i]
            yield from self.lock.lock(cpu)
            jo = yield from self._jit_cache_alloc(cpu, cache)
            self.lock.release(cpu)
            if jo is None:
                return None
            self.account(size, 0)
            addr = jo.slab.area.addr + (jo.idx << cache.obj_size_bits)
            obj = ExecAlloc(addr, size, kind, PAGE_SHIFT, 0, handle=jo)
        self.metrics.latency("jit_alloc", self.env.now - t0)
        return obj

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        """The JIT emits into its own buffer (kmalloc()ed) with plain stores."""
        if obj.kind not in JIT_KINDS:
            yield from super().write(cpu, obj, nbytes, writes)
            return
        yield self.env.timeout(int(self.slab_ns + self.copy_ns(nbytes, writes)))

    def finalize(self, cpu: int, obj: ExecAlloc):
        """jit_update(p, buf, len): the buffer into the live mapping."""
        if obj.kind not in JIT_KINDS:
            yield from super().finalize(cpu, obj)
            return
        yield from self.jit_update(cpu, obj, obj.size)

    def update(self, cpu: int, obj: ExecAlloc, nbytes: int):
        if obj.kind not in JIT_KINDS:
            yield from super().update(cpu, obj, nbytes)
            return
        yield from self.jit_update(cpu, obj, nbytes)

    def jit_update(self, cpu: int, obj: ExecAlloc, nbytes: int):
        """text_poke_copy(), or the set_memory path without text_poke."""
        if self.text_poke_updates:
            yield from self.kernel.text_poke.text_poke_copy(cpu, obj.addr, nbytes)
            return
        shared = isinstance(obj.handle, JitObj)
        if shared:
            yield from self.lock.lock(cpu)
        first = obj.addr & ~(PAGE - 1)
        npages = -(-(obj.addr + nbytes - first) // PAGE)
        cpa = self.kernel.cpa
        yield from cpa.set_memory_rw(cpu, first, npages)
        yield self.env.timeout(int(self.copy_ns(nbytes)))
        yield from cpa.set_memory_rox(cpu, first, npages)
        if shared:
            self.lock.release(cpu)

    def free(self, cpu: int, obj: ExecAlloc):
        """jit_free(); module memory and large objects: vfree()."""
        jo = obj.handle
        if not isinstance(jo, JitObj):
            yield from super().free(cpu, obj)
            return
        t0 = self.env.now
        self.account(-obj.size, 0)
        s = jo.slab
        cache = self.caches[s.cache]
        extra = yield from self.lock.take(cpu)
        s.used &= ~(1 << jo.idx)
        s.nr -= 1
        empty = s.nr == 0
        if empty:
            if s in cache.partial:
                cache.partial.remove(s)
        elif s.nr + 1 == s.objs:
            cache.partial.insert(0, s)
        # __clear_bit(), bitmap_weight(), list moves, kfree() of the bitmap
        work = self._bitmap_ns(cache) + self.list_ns + (self.slab_ns if empty else 0)
        yield self.env.timeout(int(work + extra))
        self.lock.release(cpu)
        if empty:
            yield from self.kernel.vmalloc.vfree(cpu, s.area)
            self.account(0, -PAGE)
            self.metrics.inc("mem.exec.regions", -1)
            self.metrics.inc("mem.exec.region_frees")
        self.metrics.latency("jit_free", self.env.now - t0)


class JitAllocSetMemory(JitAlloc):
    name = "jitalloc_setmem"
    first_release = None
    release_source = (
        "jit/text allocator RFC (ZGZZIM0qftr0T59b@moria.home.lan), never merged"
    )
    summary = "jitalloc, updates by set_memory_rw/memcpy/set_memory_rox"
    models = (
        "jit/text allocator RFC, May 2023 (ZGZZIM0qftr0T59b@moria.home.lan), "
        "update path of architectures without text_poke"
    )
    text_poke_updates = False
