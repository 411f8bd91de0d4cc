"""``bpf_prog_pack``: BPF JIT images in 64-byte chunks of shared packs.

Models kernel/bpf/core.c as of v6.0 (allocator 57631054fae6 and
33c9805860e5 in v5.18; ea2babac63d4 in v6.0, patchwork notice on
20220713204950.3015201-1-song@kernel.org: packs always
``PMD_SIZE * num_possible_nodes()`` and mapped with 4K pages):

- ``bpf_jit_binary_pack_alloc()``: ``size = round_up(proglen +
  sizeof(struct bpf_binary_header) + 16, BPF_PROG_CHUNK_SIZE)``, a RO+X
  chunk from ``bpf_prog_pack_alloc()`` plus a RW shadow from ``kvmalloc()``
  that the JIT writes into; the image starts at a random offset inside the
  first chunk;
- ``bpf_prog_pack_alloc()`` under the global ``pack_mutex``: first fit of
  ``bitmap_find_next_zero_area()`` over every pack of ``pack_list`` in
  order, else ``alloc_new_pack()`` (``bpf_jit_alloc_exec()``, fill with
  illegal instructions, ``set_vm_flush_reset_perms()``,
  ``set_memory_rox()`` once for the whole pack); a request larger than a
  pack gets its own page-rounded allocation with the same fill and
  ``set_memory_rox()``;
- ``bpf_jit_binary_pack_finalize()``: ``bpf_arch_text_copy()`` of the
  shadow into the chunk (x86 ``text_poke_copy()``: ``text_mutex`` and local
  flushes only), then ``kvfree()`` of the shadow;
- ``bpf_prog_pack_free()`` under ``pack_mutex``: find the owning pack by a
  linear range check, ``bpf_arch_text_invalidate()`` (x86
  ``text_poke_set()`` of INT3), ``bitmap_clear()``, and when the pack is
  empty, unlink it and ``bpf_jit_free_exec()`` it: ``vfree()`` with
  ``VM_FLUSH_RESET_PERMS`` resets the direct map and flushes once.

Trampolines (``bpf_trampoline``, in packs since v6.8: 3ba026fca878) share
the path; every other kind (modules, kprobes, ftrace) is served as
``module_alloc`` serves it.

The chunk allocator and the RW-shadow helpers here are shared with the
2 MiB variant (:mod:`simcore.strategies.bpf_prog_pack_2m`) and with
:mod:`simcore.strategies.execmem_rox`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationInfo, field_validator

from simcore.constants import PAGE, PMD_SIZE
from simcore.errors import SimulationError
from simcore.kernel.util import Shadow, kvfree, kvmalloc
from simcore.kernel.vmalloc import VM_FLUSH_RESET_PERMS, VmArea
from simcore.strategies.base import ExecAlloc, Strategy
from simcore.strategies.module_alloc import ModuleAlloc
from simcore.strategies.params import StrategyParams, param, power_of_two
from simcore.units import Size, format_size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# kernel/bpf/core.c: BPF_PROG_CHUNK_SHIFT 6
BPF_PROG_CHUNK_SIZE = 64
# sizeof(struct bpf_binary_header): u32 size, then image[] aligned to
# BPF_IMAGE_ALIGNMENT (8), include/linux/filter.h
BPF_HDR_SIZE = 8
# bpf_jit_binary_pack_alloc(): "add 16 bytes for a random section of
# illegal instructions"
BPF_PACK_PAD = 16
# arch/x86/net/bpf_jit_comp.c: align = __alignof__(struct
# exception_table_entry), the granule of the image's random start
BPF_JIT_ALIGN = 4
# Estimate: find_next_zero_bit()/find_next_bit() walk the bitmap a long at a
# time, about one cycle per word for a bitmap (4 KiB per 2 MiB pack) that
# stays in L1/L2 under pack_mutex.
BITMAP_WORD_CYCLES = 1
BITS_PER_LONG = 64

PACK_KINDS = frozenset({"bpf_prog", "bpf_trampoline"})


def round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def pack_image_size(proglen: int, chunk: int = BPF_PROG_CHUNK_SIZE) -> int:
    """bpf_jit_binary_pack_alloc()'s size for a ``proglen``-byte image."""
    return round_up(proglen + BPF_HDR_SIZE + BPF_PACK_PAD, chunk)


class PackParams(StrategyParams):
    """The two sizes the pack allocator is built from."""

    chunk_size: Size = param(
        BPF_PROG_CHUNK_SIZE,
        help="allocation granule inside a pack, a power of two from 16B to 2M: "
        "every image is rounded up to whole chunks and starts at a random "
        "offset in its first",
        source="kernel/bpf/core.c BPF_PROG_CHUNK_SHIFT 6 (57631054fae6, v5.18)",
    )
    pack_size: Size | None = param(
        None,
        help="bytes of one pack, whole 4 KiB pages and whole chunks, at most 1G; "
        "null: as the era's kernel sizes it (kernel.bpf_prog_pack_size: a page "
        "in v5.18-v5.19, PMD_SIZE (2 MiB) per possible NUMA node from v6.0)",
        source="kernel/bpf/core.c BPF_PROG_PACK_SIZE, PMD_SIZE * "
        "num_possible_nodes() since ea2babac63d4 (v6.0)",
    )

    @field_validator("chunk_size")
    @classmethod
    def _chunk(cls, v: int) -> int:
        # the 8-byte header must leave room for the image's random start
        return power_of_two(v, "chunk_size", 16, PMD_SIZE)

    @field_validator("pack_size")
    @classmethod
    def _whole_pages_of_chunks(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is None:
            return v
        chunk = info.data.get("chunk_size", BPF_PROG_CHUNK_SIZE)
        if v > 1 << 30:
            raise ValueError(f"pack_size {format_size(v)} is larger than 1G")
        if v < PAGE or v % PAGE or v % chunk:
            raise ValueError(
                f"pack_size {format_size(v)} is not whole 4 KiB pages and whole "
                f"{format_size(chunk)} chunks"
            )
        return v


class FreeRuns:
    """Free space as disjoint runs ``[start, end)`` in address order.

    First fit over the runs finds the lowest start with room for ``n``: the
    position ``bitmap_find_next_zero_area()`` returns for a bitmap of
    chunks, and the area ``mas_for_each()`` stops at in a maple tree of
    free areas.
    """

    __slots__ = ("starts", "ends")

    def __init__(self, start: int | None = None, end: int | None = None) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        if start is not None and end is not None and end > start:
            self.starts.append(start)
            self.ends.append(end)

    def __len__(self) -> int:
        return len(self.starts)

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))

    def first_fit(self, n: int) -> tuple[int, int]:
        """(index of the first run with room for ``n`` or -1, runs looked at)."""
        for i, (s, e) in enumerate(zip(self.starts, self.ends, strict=True)):
            if e - s >= n:
                return i, i + 1
        return -1, len(self.starts)

    def take(self, i: int, n: int) -> int:
        """Take ``n`` from the head of run ``i``; returns where it starts."""
        s = self.starts[i]
        if self.ends[i] - s == n:
            del self.starts[i], self.ends[i]
        else:
            self.starts[i] = s + n
        return s

    def remove(self, i: int) -> None:
        del self.starts[i], self.ends[i]

    def give(self, start: int, n: int) -> None:
        """Return ``[start, start + n)``, merging with its neighbours."""
        end = start + n
        starts, ends = self.starts, self.ends
        i = bisect_left(starts, start)
        if (i < len(starts) and starts[i] < end) or (i > 0 and ends[i - 1] > start):
            raise SimulationError(f"free of [{start:#x}, {end:#x}) that is free")
        left = i > 0 and ends[i - 1] == start
        right = i < len(starts) and starts[i] == end
        if left and right:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif left:
            ends[i - 1] = end
        elif right:
            starts[i] = start
        else:
            starts.insert(i, start)
            ends.insert(i, end)


def drop_shadow(st: Strategy, cpu: int, holder):
    """kvfree() of ``holder.shadow`` if it still has one."""
    if holder.shadow is not None:
        yield from kvfree(st.kernel, cpu, holder.shadow)
        holder.shadow = None


def place_bpf_image(
    obj: ExecAlloc,
    ro_header: int,
    size: int,
    proglen: int,
    rng,
    chunk: int = BPF_PROG_CHUNK_SIZE,
):
    """Where bpf_jit_binary_pack_alloc() puts the image: after the header,
    at a random ``alignment``-aligned offset within the first chunk."""
    hole = min(size - (proglen + BPF_HDR_SIZE), chunk - BPF_HDR_SIZE)
    start = int(rng.integers(hole)) & ~(BPF_JIT_ALIGN - 1) if hole > 0 else 0
    obj.addr = ro_header + BPF_HDR_SIZE + start
    obj.remap(obj.page_shift)  # one pack page: no per-PMD mappings to keep


def nr_numa_nodes(kernel: Kernel) -> int:
    """num_possible_nodes() of the modelled machine."""
    t = kernel.profile.topology
    return max(1, t.sockets.value * t.numa_nodes_per_socket.value)


# -- packs -------------------------------------------------------------------
@dataclass(eq=False)
class Pack:
    """struct bpf_prog_pack: the region and its chunk bitmap."""

    area: VmArea
    chunks: int
    free: FreeRuns = field(init=False)

    def __post_init__(self) -> None:
        self.free = FreeRuns(0, self.chunks)

    @property
    def ptr(self) -> int:
        return self.area.addr

    def empty(self) -> bool:
        f = self.free
        return len(f) == 1 and f.starts[0] == 0 and f.ends[0] == self.chunks


@dataclass(slots=True, eq=False)
class PackImage:
    """A pack allocation: the RO+X header (``ptr``), its rounded size, the
    pack it lives in (or its own area when larger than a pack) and the RW
    shadow until finalize."""

    ptr: int
    size: int
    pack: Pack | None = None
    area: VmArea | None = None
    shadow: Shadow | None = None

    def own_bytes(self) -> int:
        """Bytes set aside for this image alone: its area, if it has one."""
        return self.area.nr_pages * PAGE if self.area is not None else 0


class BpfProgPack(ModuleAlloc):
    name = "bpf_prog_pack"
    first_release = "5.18"
    release_source = (
        "57631054fae6 'bpf: Introduce bpf_prog_pack allocator' (v5.18). v5.18 "
        "and v5.19 fell back to PAGE_SIZE packs; the 2M-per-node pack modelled "
        "here is ea2babac63d4 (v6.0, release inferred). arm64: 1dad391daef1 "
        "'bpf, arm64: use bpf_prog_pack for memory management' (v6.9, release "
        "inferred), with aarch64_insn_copy() 451c3cab9a65"
    )
    arch_releases = {"arm64": "6.9"}
    summary = "BPF JIT images in 64 B chunks of shared 2M-per-node packs, 4K-mapped"
    models = (
        "kernel/bpf/core.c bpf_prog_pack, v6.0+ (57631054fae6, ea2babac63d4; "
        "20220713204950.3015201-1-song@kernel.org)"
    )
    # set_vm_flush_reset_perms() on every pack and oversize area
    pack_vm_flags = VM_FLUSH_RESET_PERMS
    Params = PackParams
    params: PackParams

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        c = kernel.profile.kernel_costs
        self.pack_mutex = kernel.machine.mutex("pack_mutex")
        self.pack_size = self.params.pack_size or self.default_pack_size(kernel)
        self.chunk = self.params.chunk_size
        self.chunks = self.pack_size // self.chunk
        self.packs: list[Pack] = []  # pack_list, in list_add_tail() order
        self.rng = kernel.rng(f"strategy.{self.name}")
        self.word_ns = BITMAP_WORD_CYCLES / kernel.profile.clock_ghz.value
        self.visit_ns = c.rb_node_visit_ns.value
        self.slab_ns = c.slab_alloc_ns.value

    def default_pack_size(self, kernel: Kernel) -> int:
        """BPF_PROG_PACK_SIZE of the era (kernel.bpf_prog_pack_size): in
        v5.18 and v5.19 select_bpf_prog_pack_size() kept PAGE_SIZE packs
        when module_alloc() did not return a huge mapping, which on x86 it
        never did after 559089e0a93d (v5.18-rc3); PMD_SIZE per possible
        node from ea2babac63d4 (v6.0)."""
        if kernel.knobs.bpf_prog_pack_size == "4K":
            return PAGE
        return PMD_SIZE * nr_numa_nodes(kernel)

    # -- sizing ----------------------------------------------------------------
    def bpf_image_size(self, proglen: int) -> int:
        return pack_image_size(proglen, self.chunk)

    def _words(self, bits: int) -> float:
        return -(-bits // BITS_PER_LONG) * self.word_ns

    # -- the pack region: what the 2 MiB variant changes ---------------------
    def _exec_alloc(self, cpu: int, size: int):
        """bpf_jit_alloc_exec(): module_alloc() / execmem_alloc(EXECMEM_BPF),
        with ``pack_vm_flags``."""
        return (
            yield from self.kernel.vmalloc.vmalloc(
                cpu,
                size,
                range_=self.kernel.execmem_range("bpf_prog"),
                flags=self.pack_vm_flags,
                caller="bpf_prog_pack",
            )
        )

    def _exec_free(self, cpu: int, area: VmArea):
        """bpf_jit_free_exec(): vfree(), VM_FLUSH_RESET_PERMS doing the reset."""
        yield from self.kernel.vmalloc.vfree(cpu, area)

    def _new_region(self, cpu: int, size: int):
        """Allocate, fill with illegal instructions through the RW mapping
        (bpf_fill_ill_insns()), then one set_memory_rox()."""
        area = yield from self._exec_alloc(cpu, size)
        if area is None:
            return None
        yield self.env.timeout(int(size * self.byte_ns))
        yield from self.kernel.cpa.set_memory_rox(cpu, area.addr, area.nr_pages)
        return area

    def alloc_new_pack(self, cpu: int):
        """alloc_new_pack() (pack_mutex held)."""
        # kzalloc() of the descriptor with its bitmap
        yield self.env.timeout(int(self.slab_ns + self.chunks / 8 * self.byte_ns))
        area = yield from self._new_region(cpu, self.pack_size)
        if area is None:
            yield self.env.timeout(int(self.slab_ns))  # kfree()
            return None
        pack = Pack(area, self.chunks)
        self.packs.append(pack)
        self.account(0, self.pack_size)
        self.metrics.inc("mem.exec.regions")
        self.metrics.inc("mem.exec.region_allocs")
        return pack

    # -- bpf_prog_pack_alloc() / bpf_prog_pack_free() ------------------------
    def bpf_prog_pack_alloc(self, cpu: int, size: int):
        """Returns a PackImage, or None when memory runs out."""
        work = yield from self.pack_mutex.take(cpu)
        img = yield from self._pack_alloc_locked(cpu, size, work)
        self.pack_mutex.release(cpu)
        return img

    def _pack_alloc_locked(self, cpu: int, size: int, work: float):
        if size > self.pack_size:
            yield self.env.timeout(int(work))
            size = round_up(size, PAGE)
            area = yield from self._new_region(cpu, size)
            if area is None:
                return None
            self.metrics.inc("mem.exec.oversize_allocs")
            return PackImage(area.addr, size, area=area)
        nbits = -(-size // self.chunk)
        found = None
        for pack in self.packs:
            i, _ = pack.free.first_fit(nbits)
            if i < 0:
                work += self._words(self.chunks)
                continue
            work += self._words(pack.free.starts[i] + nbits)
            found = pack, i
            break
        if found is None:
            yield self.env.timeout(int(work))
            work = 0
            pack = yield from self.alloc_new_pack(cpu)
            if pack is None:
                return None
            found = pack, 0
        pack, i = found
        pos = pack.free.take(i, nbits)
        yield self.env.timeout(int(work + self._words(nbits)))  # bitmap_set()
        return PackImage(pack.ptr + pos * self.chunk, size, pack=pack)

    def bpf_prog_pack_free(self, cpu: int, img: PackImage):
        work = yield from self.pack_mutex.take(cpu)
        if img.area is not None:
            yield self.env.timeout(int(work))
            yield from self._exec_free(cpu, img.area)
            self.pack_mutex.release(cpu)
            return
        pack = img.pack
        # list_for_each_entry() range check
        work += (self.packs.index(pack) + 1) * self.visit_ns
        yield self.env.timeout(int(work))
        # bpf_arch_text_invalidate()
        yield from self.kernel.text_poke.text_poke_set(cpu, img.ptr, img.size)
        nbits = -(-img.size // self.chunk)
        pack.free.give((img.ptr - pack.ptr) // self.chunk, nbits)
        # bitmap_clear(), then bitmap_find_next_zero_area(.., 0, nr all)
        # reads up to the first set bit
        f = pack.free
        lead = f.ends[0] if f.starts[0] == 0 else 0
        yield self.env.timeout(int(self._words(nbits) + self._words(lead)))
        if pack.empty():
            self.packs.remove(pack)
            yield from self._exec_free(cpu, pack.area)
            yield self.env.timeout(int(self.slab_ns))  # kfree(pack)
            self.account(0, -self.pack_size)
            self.metrics.inc("mem.exec.regions", -1)
            self.metrics.inc("mem.exec.region_frees")
        self.pack_mutex.release(cpu)

    # -- the strategy interface ------------------------------------------------
    def alloc(self, cpu: int, size: int, kind: str):
        """bpf_jit_binary_pack_alloc(): a chunk and its RW shadow."""
        if kind not in PACK_KINDS:
            return (yield from super().alloc(cpu, size, kind))
        img = yield from self.bpf_prog_pack_alloc(cpu, size)
        if img is None:
            return None
        img.shadow = yield from kvmalloc(
            self.kernel, cpu, img.size, img.size * self.byte_ns
        )
        if img.shadow is None:
            yield from self.bpf_prog_pack_free(cpu, img)
            return None
        self.account(size, img.own_bytes())
        addr = img.ptr + (BPF_HDR_SIZE if kind == "bpf_prog" else 0)
        shift = self.kernel.pagetables.page_shift(img.ptr) or 12
        return ExecAlloc(addr, size, kind, shift, img.size, handle=img)

    def shrink_request(self, obj: ExecAlloc, nbytes: int) -> None:
        """The JIT's real length is known: place the image in its chunk."""
        super().shrink_request(obj, nbytes)
        img = obj.handle
        if isinstance(img, PackImage) and obj.kind == "bpf_prog":
            place_bpf_image(obj, img.ptr, img.size, nbytes, self.rng, self.chunk)

    def finalize(self, cpu: int, obj: ExecAlloc):
        """bpf_jit_binary_pack_finalize(): bpf_arch_text_copy() of the
        shadow into the pack, kvfree() of the shadow."""
        img = obj.handle
        if not isinstance(img, PackImage):
            yield from super().finalize(cpu, obj)
            return
        yield from self.kernel.text_poke.text_poke_copy(cpu, img.ptr, img.size)
        yield from drop_shadow(self, cpu, img)

    def free(self, cpu: int, obj: ExecAlloc):
        """bpf_jit_binary_pack_free()."""
        img = obj.handle
        if not isinstance(img, PackImage):
            yield from super().free(cpu, obj)
            return
        self.account(-obj.size, -img.own_bytes())
        yield from self.bpf_prog_pack_free(cpu, img)
        yield from drop_shadow(self, cpu, img)
