"""``execmem_rox``: EXECMEM_ROX_CACHE, text in page slices of 2 MiB ROX areas.

Models mm/execmem.c's ROX cache as x86 shipped it for module text in
v6.15: merged for v6.13 (5185e7f9f3bd; series
20241007062858.44248-1-rppt@kernel.org), turned off before that release
(a9bbe3413331) and on again, reworked, by the series
20250126074733.1384926-1-rppt@kernel.org (64f6a4e10c05 and its parents):
the cache stays in the direct map and the module loader writes its text
through a temporary RW remap instead of a copy. Which users the cache serves is the era's (``kernel.execmem_rox_users``):
module text and init text from v6.15, when the cache shipped; kprobes'
instruction slots and ftrace's trampolines too from v6.17 (before, they
are plain module-range vmalloc()s that set_memory_rox() their pages, as
:class:`ModuleAlloc` serves them). BPF programs and trampolines come from
bpf_prog_pack, as in every release:
x86's ``execmem_info`` gives ``EXECMEM_BPF`` no ``EXECMEM_ROX_CACHE`` flag,
and the packs are ``execmem_alloc(EXECMEM_BPF)`` areas
(:class:`~simcore.strategies.bpf_prog_pack.BpfProgPack`); ``params: {bpf:
rox}`` puts them in the cache too, a what-if no release shipped. Data and
read-only data kinds come from ``execmem_alloc(EXECMEM_MODULE_DATA)``, a
plain vmalloc in the module range, as :class:`ModuleAlloc` serves them.

- ``execmem_alloc()`` page-aligns the size; ``__execmem_cache_alloc()``
  takes ``execmem_cache.mutex`` and walks ``free_areas`` (a maple tree, here
  sorted runs) for the first area large enough, records the slice in
  ``busy_areas`` and puts the rest back;
- a miss runs ``execmem_cache_populate()``: ``vmalloc()`` of
  ``round_up(size, PMD_SIZE)`` with ``VM_ALLOW_HUGE_VMAP`` (PMD-aligned;
  4K pages when no order-9 page is free), fill with INT3 through the RW
  mapping (``execmem_fill_trapping_insns(.., true)``), then
  ``set_memory_rox()`` over the area, a CPA on the vmalloc mapping and on
  the direct-map alias (925f42645118, v6.15; v6.13-rc had removed the
  pages from the direct map and mapped them again ROX), add the area to
  ``free_areas``, and try again;
- writing module text: ``module_memory_alloc()`` remaps the slice RW
  (``execmem_make_temp_rw()``: ``set_memory_nx()`` and ``set_memory_rw()``,
  which split the 2 MiB mapping the slice sits in), the loader writes in
  place, and ``module_enable_text_rox()`` restores it
  (``execmem_restore_rox()``: ``set_memory_rox()``, which re-forms the 2M
  page in the ``cpa_collapse`` era): three CPA calls, each with its flush.
  The other users write a copy: kprobes and ftrace through text_poke; the
  BPF JIT a ``kvmalloc()``ed shadow it ``bpf_arch_text_copy()``s in.
  ``writes`` > 1 is the design the execmem v2 cover letter dropped
  (20230616085038.4121892-1-rppt@kernel.org: "modprobe takes ten times
  more"): every section copy and relocation its own ``text_poke()``;
- ``execmem_cache_free()``: drop the slice from ``busy_areas``, refill it with
  INT3 (``text_poke_set()``), merge it back into ``free_areas`` and
  ``schedule_work()`` the cleaner, which hands every free area covering a
  whole populated area back: direct map valid again, ``vfree()``.

Memory pressure: mm/execmem.c registers no shrinker for the cache (not
in 5185e7f9f3bd, nor in the 2025 rework that defers frees), so reclaim
takes nothing from it: the areas execmem_cache_clean() hands back, once
wholly free, after an execmem_cache_free(), are all the cache ever
returns, whether or not memory is short. The model adds none.

Where the model departs from the kernel: the cleaner frees an area only
when all of it is free; v6.17's rework of the free path (deferred INT3
fills, execmem_alloc_rw(), a 4K fallback in populate) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import field_validator

from simcore.constants import PAGE, PMD_SHIFT, PMD_SIZE
from simcore.kernel.module_layout import CORE, INIT
from simcore.kernel.util import Shadow, kvmalloc, vzalloc
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP, VmArea
from simcore.strategies.base import ExecAlloc
from simcore.strategies.bpf_prog_pack import (
    PACK_KINDS,
    BpfProgPack,
    FreeRuns,
    PackImage,
    drop_shadow,
    pack_image_size,
    place_bpf_image,
    round_up,
)
from simcore.strategies.module_alloc import ModuleAlloc
from simcore.strategies.params import StrategyParams, param
from simcore.strategies.vmalloc_huge_modules import follow_mapping
from simcore.units import Size, format_size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# EXECMEM_MODULE_TEXT's users: the kinds the module loader remaps RW (a
# module's core and init text)
MODULE_TEXT = frozenset({CORE, INIT})

# include/linux/maple_tree.h: MAPLE_RANGE64_SLOTS, the fan-out of the
# range nodes that free_areas and busy_areas are made of
MAPLE_SLOTS = 16


def _mt_depth(n: int) -> int:
    """Levels of a maple tree holding ``n`` ranges."""
    depth, cap = 1, MAPLE_SLOTS
    while cap < n:
        depth += 1
        cap *= MAPLE_SLOTS
    return depth


class RoxParams(StrategyParams):
    bpf: Literal["pack", "rox"] = param(
        "pack",
        help="where BPF programs and trampolines go: pack (bpf_prog_pack, as "
        "every release did) or rox (the ROX cache too: a what-if)",
        source="arch/x86/mm/init.c execmem_arch_setup() (v6.13+): "
        "EXECMEM_ROX_CACHE on EXECMEM_MODULE_TEXT only",
    )
    area_size: Size = param(
        PMD_SIZE,
        help="granule of the cache: a miss populates round_up(size, area_size) "
        "bytes of ROX memory, whole 2 MiB pages, at most 1G",
        source="mm/execmem.c execmem_cache_populate(): alloc_size = "
        "round_up(size, PMD_SIZE) (5185e7f9f3bd, v6.13)",
    )

    @field_validator("area_size")
    @classmethod
    def _whole_pmds(cls, v: int) -> int:
        # the cleaner hands back whole populated areas, PMD by PMD
        if v < PMD_SIZE or v % PMD_SIZE or v > 1 << 30:
            raise ValueError(
                f"area_size {format_size(v)} is not whole 2M pages up to 1G"
            )
        return v


@dataclass(slots=True, eq=False)
class RoxSlice:
    addr: int
    size: int  # bytes asked for (a staged copy's size)
    shadow: Shadow | None = None
    temp_rw: bool = False  # remapped RW for the module loader (v6.15)


class ExecmemRox(ModuleAlloc):
    name = "execmem_rox"
    core_layout = False  # execmem (v6.10+) allocates per mod_mem_type
    first_release = "6.15"
    release_source = (
        "x86 module text: 5185e7f9f3bd (merged for v6.13) was turned off before "
        "the v6.13 release by a9bbe3413331 'x86: Disable EXECMEM_ROX support' "
        "(x86_urgent_for_v6.13) and on again with 64f6a4e10c05 'x86: re-enable "
        "EXECMEM_ROX support' (v6.15); BPF stays in bpf_prog_pack (params bpf: "
        "rox, BPF in the cache, is a what-if in every era). arm64 has no "
        "EXECMEM_ROX_CACHE (its execmem_info sets no such flag, "
        "arch/arm64/mm/init.c)"
    )
    arch_releases = {"arm64": None}
    summary = "EXECMEM_ROX_CACHE: text in page slices of shared 2M ROX areas"
    models = (
        "mm/execmem.c EXECMEM_ROX_CACHE for x86 module text, merged for v6.13 "
        "(5185e7f9f3bd; 20241007062858.44248-1-rppt@kernel.org), shipped from v6.15"
    )
    Params = RoxParams
    params: RoxParams

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        prof = kernel.profile
        self.cache_mutex = kernel.machine.mutex("execmem_cache_mutex")
        self.free_areas = FreeRuns()
        self.busy: dict[int, int] = {}  # busy_areas: start -> size
        self.areas: dict[int, VmArea] = {}  # populated vm areas by start
        self.visit_ns = prof.kernel_costs.rb_node_visit_ns.value
        self.wakeup_ns = int(round(prof.locks.mutex_wakeup_ns.value))
        self.clean_pending = False
        self.live: dict[int, ExecAlloc] = {}  # slices handed out, by address
        # the kinds whose execmem range has EXECMEM_ROX_CACHE in this era
        self.rox_kinds = MODULE_TEXT
        # the v6.17 series: kprobes and ftrace in the cache, and
        # execmem_cache_free() reworked (see _cache_free)
        self.reworked_free = kernel.knobs.execmem_rox_users == "modules_kprobes_ftrace"
        if self.reworked_free:
            self.rox_kinds |= {"kprobe", "ftrace"}
        self.rng = kernel.rng(f"strategy.{self.name}")
        self._bpf_pack: BpfProgPack | None = None

    @property
    def _pack(self) -> BpfProgPack | None:
        """BPF's own allocator beside the cache (params.bpf), as the kernel
        has bpf_prog_pack beside execmem_cache; set up on first use, so a
        run without BPF has no pack_mutex."""
        if self.params.bpf != "pack":
            return None
        if self._bpf_pack is None:
            self._bpf_pack = BpfProgPack(self.kernel)
        return self._bpf_pack

    def params_what_if(self) -> bool:
        return self.params.bpf == "rox"

    def _packed(self, obj: ExecAlloc) -> bool:
        return isinstance(obj.handle, PackImage) and self._pack is not None

    def bpf_image_size(self, proglen: int) -> int:
        """The JIT writing into ROX memory is bpf_jit_binary_pack_alloc()."""
        if self._pack is not None:
            return self._pack.bpf_image_size(proglen)
        return pack_image_size(proglen)

    def _tree_ns(self, n: int, ops: int = 1) -> float:
        return ops * _mt_depth(n) * self.visit_ns

    # -- the cache -------------------------------------------------------------
    def _cache_alloc(self, cpu: int, size: int):
        """__execmem_cache_alloc(): the slice's start, or None on a miss."""
        work = yield from self.cache_mutex.take(cpu)
        i, looked = self.free_areas.first_fit(size)
        work += looked * self.visit_ns  # mas_for_each()
        addr = None
        if i >= 0:
            addr = self.free_areas.take(i, size)
            self.busy[addr] = size
            # busy store, free erase, free store of the rest
            work += self._tree_ns(len(self.busy)) + self._tree_ns(
                len(self.free_areas), 2
            )
        yield self.env.timeout(int(work))
        self.cache_mutex.release(cpu)
        return addr

    def _cache_add(self, cpu: int, addr: int, size: int):
        """execmem_cache_add(): merge into free_areas (walk, next, store)."""
        work = yield from self.cache_mutex.take(cpu)
        self.free_areas.give(addr, size)
        work += self._tree_ns(len(self.free_areas), 3)
        yield self.env.timeout(int(work))
        self.cache_mutex.release(cpu)

    def _force_rw(self, cpu: int, addr: int, size: int):
        """execmem_force_rw() (execmem_make_temp_rw() in v6.15-v6.16):
        set_memory_nx() then set_memory_rw() over the range's pages, each a
        CPA on the vmalloc mapping (splitting the 2M page the range sits in)
        and its direct-map alias, each with its flush."""
        cpa, npages = self.kernel.cpa, -(-size // PAGE)
        yield from cpa.set_memory_nx(cpu, addr, npages)
        yield from cpa.set_memory_rw(cpu, addr, npages)
        self._follow(addr, size)

    def _restore(self, cpu: int, addr: int, size: int):
        """execmem_restore_rox(): set_memory_rox() over the range, which
        re-forms the 2M mapping where the era collapses
        (kernel.cpa_collapse)."""
        yield from self.kernel.cpa.set_memory_rox(cpu, addr, -(-size // PAGE))
        self._follow(addr, size)

    def _temp_rw(self, cpu: int, sl: RoxSlice):
        """module_memory_alloc() -> execmem_make_temp_rw() (05e555b81726,
        c287c0723329, v6.15) over the slice; the loader then writes the
        text in place."""
        yield from self._force_rw(cpu, sl.addr, sl.size)
        sl.temp_rw = True

    def _restore_rox(self, cpu: int, sl: RoxSlice):
        """module_enable_text_rox() -> execmem_restore_rox() of the slice."""
        yield from self._restore(cpu, sl.addr, sl.size)
        sl.temp_rw = False

    def _follow(self, addr: int, size: int) -> None:
        """Every live slice in the 2M pages a CPA split or re-formed now
        sits under their new mapping, not only the one it was for."""
        lo = addr >> PMD_SHIFT << PMD_SHIFT
        hi = ((addr + max(1, size) - 1) >> PMD_SHIFT) + 1 << PMD_SHIFT
        for start, obj in self.live.items():
            if start < hi and start + obj.footprint > lo:
                follow_mapping(self.kernel, obj)

    def _set_direct_map(self, cpu: int, area: VmArea, valid: bool):
        """execmem_set_direct_map_valid(): one call per (huge) page."""
        cpa, pt = self.kernel.cpa, self.kernel.pagetables
        nr = 1 << (area.page_shift - 12)
        op = (
            cpa.set_direct_map_default_noflush
            if valid
            else cpa.set_direct_map_invalid_noflush
        )
        for i in range(0, area.nr_pages, nr):
            yield from op(cpu, pt.page_address(area.pages[i]), nr)

    def _populate(self, cpu: int, size: int):
        """execmem_cache_populate(): True when an area was added."""
        kernel = self.kernel
        alloc_size = round_up(size, self.params.area_size)
        area = yield from kernel.vmalloc.vmalloc(
            cpu,
            alloc_size,
            range_="modules",
            align=PMD_SIZE,
            flags=VM_ALLOW_HUGE_VMAP,
            caller="execmem_rox",
        )
        if area is None:
            return False
        start = area.addr
        # execmem_fill_trapping_insns(p, alloc_size, writable = true)
        yield self.env.timeout(int(alloc_size * self.byte_ns))
        # set_memory_rox() over the area: CPA makes the vmalloc mapping and
        # the direct-map alias read-only (925f42645118 'execmem: don't
        # remove ROX cache from the direct map', v6.15: /proc/kcore reads
        # module text through the alias; v6.13-rc removed the pages from
        # the direct map and mapped them again ROX)
        err = yield from kernel.cpa.set_memory_rox(cpu, start, area.nr_pages)
        if err:
            yield from self._set_direct_map(cpu, area, True)
            yield from kernel.vmalloc.vfree(cpu, area)
            return False
        self.areas[start] = area
        yield from self._cache_add(cpu, start, alloc_size)
        self.account(0, alloc_size)
        self.metrics.inc("mem.exec.regions")
        self.metrics.inc("mem.exec.region_allocs")
        return True

    def _cache_free(self, cpu: int, addr: int):
        """execmem_cache_free(). v6.15-v6.16: erase from busy_areas under the
        cache mutex, execmem_fill_trapping_insns(ptr, size, writable =
        false) (text_poke_set() of INT3, under text_mutex), then
        execmem_cache_add(). From 'execmem: rework execmem_cache_free()', in
        the v6.17 series that also put kprobes and ftrace in the cache
        (``kernel.execmem_rox_users: modules_kprobes_ftrace``, the same
        era), __execmem_cache_free() under the cache mutex:
        execmem_force_rw(), the INT3 fill as plain stores,
        execmem_restore_rox(), execmem_cache_add_locked(); no text_mutex.
        (Its deferred path, taken only when execmem_force_rw() fails, is
        not modelled.)"""
        work = yield from self.cache_mutex.take(cpu)
        size = self.busy.pop(addr)
        work += self._tree_ns(len(self.busy) + 1, 2)  # mas_walk(), erase
        yield self.env.timeout(int(work))
        if self.reworked_free:
            yield from self._force_rw(cpu, addr, size)
            yield self.env.timeout(int(size * self.byte_ns))
            yield from self._restore(cpu, addr, size)
            self.free_areas.give(addr, size)
            ns = self._tree_ns(len(self.free_areas), 3)
            yield self.env.timeout(int(ns))
            self.cache_mutex.release(cpu)
        else:
            self.cache_mutex.release(cpu)
            yield from self.kernel.text_poke.text_poke_set(cpu, addr, size)
            yield from self._cache_add(cpu, addr, size)
        if not self.clean_pending:
            # schedule_work(&execmem_cache_clean_work): no-op while pending
            self.clean_pending = True
            self.env.process(self._clean(cpu))

    def _clean(self, cpu: int):
        """execmem_cache_clean() on this CPU's kworker (system_wq is
        per-CPU): its time after taking the mutex is the task's there
        (Machine.kworker_start())."""
        yield self.env.timeout(self.wakeup_ns)
        self.clean_pending = False
        work = yield from self.cache_mutex.take(cpu)
        machine = self.kernel.machine
        t0 = machine.kworker_start()
        free = self.free_areas
        i = 0
        while i < len(free):
            s, e = free.starts[i], free.ends[i]
            work += self.visit_ns
            area = self.areas.get(s)
            if area is None or s % PMD_SIZE or e - s != area.nr_pages * PAGE:
                i += 1
                continue
            yield self.env.timeout(int(work + self._tree_ns(len(free))))
            work = 0
            free.remove(i)
            del self.areas[s]
            yield from self._set_direct_map(cpu, area, True)
            yield from self.kernel.vmalloc.vfree(cpu, area)
            self.account(0, -(e - s))
            self.metrics.inc("mem.exec.regions", -1)
            self.metrics.inc("mem.exec.region_frees")
        yield self.env.timeout(int(work))
        self.cache_mutex.release(cpu)
        machine.kworker_done(cpu, t0)

    # -- the strategy interface ------------------------------------------------
    def alloc(self, cpu: int, size: int, kind: str):
        """execmem_alloc(): the era's ROX-cached kinds from the cache, the
        rest plain vmalloc; BPF from bpf_prog_pack unless params.bpf is
        rox, which puts it in the cache too."""
        if kind in PACK_KINDS and self._pack is not None:
            return (yield from self._pack.alloc(cpu, size, kind))
        if kind not in self.rox_kinds and kind not in PACK_KINDS:
            return (yield from super().alloc(cpu, size, kind))
        asize = round_up(size, PAGE)
        addr = yield from self._cache_alloc(cpu, asize)
        if addr is None:
            ok = yield from self._populate(cpu, asize)
            if ok:
                addr = yield from self._cache_alloc(cpu, asize)
        if addr is None:
            return None
        self.account(size, 0)
        shift = self.kernel.pagetables.page_shift(addr) or 12
        obj = ExecAlloc(addr, size, kind, shift, asize, handle=RoxSlice(addr, size))
        self.live[addr] = obj
        return obj

    def shrink_request(self, obj: ExecAlloc, nbytes: int) -> None:
        if self._packed(obj):
            self._pack.shrink_request(obj, nbytes)
            return
        super().shrink_request(obj, nbytes)
        sl = obj.handle
        if isinstance(sl, RoxSlice) and obj.kind == "bpf_prog":
            place_bpf_image(obj, sl.addr, sl.size, nbytes, self.rng)

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        """Module text through a temporary RW remap (v6.15); other users'
        text staged in a writable copy; or (``writes`` > 1) one
        text_poke() per write straight into the ROX slice."""
        if self._packed(obj):
            yield from self._pack.write(cpu, obj, nbytes, writes)
            return
        sl = obj.handle
        if not isinstance(sl, RoxSlice):
            yield from super().write(cpu, obj, nbytes, writes)
            return
        if obj.kind in MODULE_TEXT and writes == 1:
            # remapped RW once, at the loader's first write here (the
            # kernel does it in module_memory_alloc(), before the memset)
            if not sl.temp_rw:
                yield from self._temp_rw(cpu, sl)
            yield self.env.timeout(int(self.copy_ns(nbytes, writes)))
            return
        tp = self.kernel.text_poke
        if writes > 1:
            per, rest = divmod(nbytes, writes)
            off = 0
            for k in range(writes):
                n = per + (k < rest)
                yield from tp.text_poke(cpu, sl.addr + off, max(1, n))
                off += n
            return
        if sl.shadow is None:
            if obj.kind in PACK_KINDS:  # the JIT fills its RW image at once
                fill = sl.size * self.byte_ns
                sl.shadow = yield from kvmalloc(self.kernel, cpu, sl.size, fill)
            else:
                sl.shadow = yield from vzalloc(self.kernel, cpu, sl.size)
            if sl.shadow is None:
                # no memory for a copy: write in place
                yield from tp.text_poke_copy(cpu, sl.addr, nbytes)
                return
        yield self.env.timeout(int(self.copy_ns(nbytes, writes)))

    def finalize(self, cpu: int, obj: ExecAlloc):
        """Module text remapped RW: module_enable_text_rox() restores ROX.
        Otherwise execmem_update_copy() / bpf_arch_text_copy() of the
        staged copy into the slice, read-only and executable already."""
        if self._packed(obj):
            yield from self._pack.finalize(cpu, obj)
            return
        sl = obj.handle
        if not isinstance(sl, RoxSlice):
            yield from super().finalize(cpu, obj)
            return
        if sl.temp_rw:  # module_enable_text_rox()
            yield from self._restore_rox(cpu, sl)
            return
        if sl.shadow is not None:
            yield from self.kernel.text_poke.text_poke_copy(cpu, sl.addr, sl.size)
            yield from drop_shadow(self, cpu, sl)

    def free(self, cpu: int, obj: ExecAlloc):
        """execmem_free()."""
        if self._packed(obj):
            yield from self._pack.free(cpu, obj)
            return
        sl = obj.handle
        if not isinstance(sl, RoxSlice):
            yield from super().free(cpu, obj)
            return
        self.account(-obj.size, 0)
        del self.live[sl.addr]
        if sl.temp_rw:  # a load that failed before module_enable_text_rox()
            yield from self._restore_rox(cpu, sl)
        yield from self._cache_free(cpu, sl.addr)
        yield from drop_shadow(self, cpu, sl)
