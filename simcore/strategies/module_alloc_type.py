"""``module_alloc_type``: Song Liu's type-aware module allocator (May 2023).

Models "Type aware module allocator" (20230526051529.3387103-1-song@
kernel.org): ``module_alloc_type(size, type)`` looks up the
``struct mod_alloc_params`` of the ``mod_mem_type`` and calls
``__vmalloc_node_range()`` with its ``vmalloc_params`` (range, pgprot,
vm_flags) and ``alignment``; with ``MOD_ALLOC_SET_MEMORY`` the allocator
itself calls ``module_memory_enable_protection()`` before returning, and
the loader's ``module_set_memory()`` and the users'
``module_memory_protect()`` become no-ops. ``fill`` and ``invalidate``
replace the loader's ``memcpy()`` of sections and ``memset()`` of new
memory. The x86 table of patch 3 (20230526051529.3387103-4-song@
kernel.org):

- ``MOD_TEXT``, ``MOD_INIT_TEXT``: granularity and alignment a page,
  ``SET_MEMORY`` (``set_memory_rox()`` at allocation), fill
  ``text_poke_copy()``, invalidate ``text_poke_set(0xcc)``, vm_flags
  ``VM_FLUSH_RESET_PERMS | VM_ALLOW_HUGE_VMAP``;
- ``MOD_RODATA``, ``MOD_INIT_RODATA``: the same without huge mappings,
  protected with ``set_memory_nx()`` + ``set_memory_ro()`` at allocation;
- ``MOD_DATA``, ``MOD_INIT_DATA``, ``MOD_RO_AFTER_INIT``: plain; the loader
  still calls ``set_memory_nx()`` (and ``set_memory_ro()`` after init for
  ro_after_init);
- every type mapped ``PAGE_KERNEL_EXEC`` first (``vmp->pgprot``), so each
  of those ``set_memory_nx()`` calls really changes PTEs and flushes.

Relocations, into whatever section, are written with one ``text_poke()``
each under ``text_mutex``, then ``text_poke_sync()``
(``write_relocate_add()``).
The users, all on ``MOD_TEXT``: the BPF JIT keeps ``bpf_prog_pack`` whose
packs now come from ``module_alloc_type()``, so they are 2 MiB-mapped
(``PMD_SIZE * num_possible_nodes()`` with ``VM_ALLOW_HUGE_VMAP``) and filled
with ``text_poke_set()``; BPF trampolines (a page each before v6.8) are
written between ``module_memory_force_unprotect()`` (``set_memory_nx()`` +
``set_memory_rw()``) and ``module_memory_force_protect()``
(``set_memory_rox()``), because ``arch_prepare_bpf_trampoline()`` cannot
yet emit through ``text_poke``; kprobe slots and ftrace trampolines are
written with ``text_poke()``. The XDP dispatcher, which the BPF core
allocates as a trampoline, is written that way once, then updated with
``bpf_arch_text_copy()``.

Granularity above alignment lets a type share pages between allocations;
the series defines the interface but ships no such "binpack" allocator,
so here only BPF programs share (64-byte chunks of a pack); a table that
asks sub-page sharing of another type is refused.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from simcore.constants import PAGE, PAGE_SHIFT, PMD_SIZE
from simcore.kernel.pgtable import PAGE_KERNEL_EXEC
from simcore.kernel.vmalloc import VM_ALLOW_HUGE_VMAP, VM_FLUSH_RESET_PERMS, VmArea
from simcore.strategies.base import ExecAlloc
from simcore.strategies.bpf_prog_pack import BpfProgPack, PackImage, PackParams
from simcore.strategies.params import StrategyParams, param, power_of_two
from simcore.strategies.vmalloc_huge_modules import follow_mapping
from simcore.units import Size

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# include/linux/moduleloader.h of the series: enum mod_alloc_params_flags
MOD_ALLOC_SET_MEMORY = 1 << 3
# Estimate: a relocation stores 4 (R_X86_64_PC32/32S) or 8 (R_X86_64_64)
# bytes; one text_poke() costs about the same for either.
RELOC_BYTES = 8


@dataclass(frozen=True)
class TypeParams:
    """struct mod_alloc_params, as far as it changes costs."""

    flags: int
    granularity: int
    alignment: int
    poke: bool  # fill = text_poke_copy, invalidate = text_poke_set
    huge: bool  # VM_ALLOW_HUGE_VMAP in vmp->vm_flags
    set_memory: str = ""  # module_memory_enable_protection() of the type


X86_TEXT = TypeParams(MOD_ALLOC_SET_MEMORY, PAGE, PAGE, True, True, "rox")
X86_RO_DATA = TypeParams(MOD_ALLOC_SET_MEMORY, PAGE, PAGE, True, False, "nx_ro")
X86_RW_DATA = TypeParams(0, PAGE, PAGE, False, False)

# kind -> (allocator parameters, how its users write it)
X86_KINDS: dict[str, tuple[TypeParams, str]] = {
    "module_text": (X86_TEXT, "poke"),
    "module_init_text": (X86_TEXT, "poke"),
    "module_rodata": (X86_RO_DATA, "poke"),
    "module_init_rodata": (X86_RO_DATA, "poke"),
    "module_data": (X86_RW_DATA, "memcpy"),
    "module_init_data": (X86_RW_DATA, "memcpy"),
    "module_ro_after_init": (X86_RW_DATA, "memcpy"),
    "bpf_trampoline": (X86_TEXT, "unprotect"),
    "kprobe": (X86_TEXT, "poke"),
    "ftrace": (X86_TEXT, "poke"),
}
MODULE_KINDS = frozenset(k for k in X86_KINDS if k.startswith("module_"))


class TypeSpec(StrategyParams):
    """One row of the table: struct mod_alloc_params of a type, and how
    its users write it."""

    set_memory: Literal["none", "rox", "nx_ro"] = Field(
        description="MOD_ALLOC_SET_MEMORY and the protection the allocator "
        "applies itself (none: the loader's set_memory_nx() at finalize)"
    )
    alignment: Size = Field(description="vmalloc alignment, a power of two >= 4K")
    granularity: Size = Field(
        description="equal to alignment (follows it when not given): no binpack"
    )
    fill: Literal["text_poke", "memcpy"] = Field(
        description="how new memory is invalidated and sections copied in"
    )
    huge: bool = Field(description="VM_ALLOW_HUGE_VMAP in vmp->vm_flags")
    write: Literal["poke", "memcpy", "unprotect"] = Field(
        description="how users write it: text_poke(), plain stores, or between "
        "module_memory_force_unprotect() and _protect()"
    )

    @field_validator("alignment")
    @classmethod
    def _align(cls, v: int) -> int:
        return power_of_two(v, "alignment", PAGE, PMD_SIZE)

    @model_validator(mode="after")
    def _consistent(self) -> TypeSpec:
        if self.granularity != self.alignment:
            raise ValueError(
                "granularity differs from alignment: sub-page sharing, which "
                "the series leaves to a binpack allocator it does not contain"
            )
        if self.set_memory != "none" and "memcpy" in (self.fill, self.write):
            raise ValueError(
                f"set_memory {self.set_memory} makes the memory read-only at "
                "allocation, so it cannot be filled or written with plain stores"
            )
        return self

    def type_params(self) -> tuple[TypeParams, str]:
        flags = MOD_ALLOC_SET_MEMORY if self.set_memory != "none" else 0
        protect = "" if self.set_memory == "none" else self.set_memory
        tp = TypeParams(
            flags,
            self.granularity,
            self.alignment,
            self.fill == "text_poke",
            self.huge,
            protect,
        )
        return tp, self.write


def _spec_of(tp: TypeParams, how: str) -> dict[str, Any]:
    return {
        "set_memory": tp.set_memory or "none",
        "alignment": tp.alignment,
        "granularity": tp.granularity,
        "fill": "text_poke" if tp.poke else "memcpy",
        "huge": tp.huge,
        "write": how,
    }


class TypeAllocParams(PackParams):
    types: dict[str, TypeSpec] = param(
        default_factory=lambda: {k: _spec_of(*v) for k, v in X86_KINDS.items()},
        help="per-type table, by allocation kind; an entry given changes only "
        "the fields it names",
        source="x86 table of patch 3, 20230526051529.3387103-4-song@kernel.org",
        validate_default=True,
    )

    @field_validator("types", mode="before")
    @classmethod
    def _over_x86(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {k: _spec_of(*tp) for k, tp in X86_KINDS.items()}
        for kind, entry in v.items():
            if kind not in out:
                hint = difflib.get_close_matches(str(kind), list(out), n=1)
                tip = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ValueError(
                    f"unknown kind {kind!r}{tip} (known: {', '.join(out)})"
                )
            if isinstance(entry, TypeSpec):
                entry = entry.model_dump()
            if not isinstance(entry, dict):
                out[kind] = entry  # the row model says what it should be
                continue
            if "alignment" in entry and "granularity" not in entry:
                # no binpack: the granule follows the alignment given
                entry = {**entry, "granularity": entry["alignment"]}
            out[kind] = {**out[kind], **entry}
        return out


class ModuleAllocType(BpfProgPack):
    name = "module_alloc_type"
    core_layout = False  # per type by design (2023)
    arches = ("x86_64",)
    arch_reason = "arm64 change_memory_common() refuses to change the permissions of a huge (PMD) mapping, which its ROX text regions ask for"
    first_release = None
    release_source = (
        "module_alloc_type RFC (20230526051529.3387103-1-song@kernel.org), never merged"
    )
    summary = "per-type module_alloc_type(): ROX text and RO data at allocation"
    models = (
        "module_alloc_type RFC, May 2023 (20230526051529.3387103-1-song@kernel.org)"
    )
    Params = TypeAllocParams
    params: TypeAllocParams

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        # kind -> (allocator parameters, how its users write it)
        self.kinds = {k: spec.type_params() for k, spec in self.params.types.items()}
        self.text_params = self.kinds["module_text"][0]

    # -- module_alloc_type() ---------------------------------------------------
    def module_alloc_type(self, cpu: int, size: int, params: TypeParams, caller: str):
        """Returns the VmArea, or None."""
        t0 = self.env.now
        flags = VM_FLUSH_RESET_PERMS
        if params.huge and self.kernel.vmalloc.huge_fits(size):
            flags |= VM_ALLOW_HUGE_VMAP
        area = yield from self.kernel.vmalloc.vmalloc(
            cpu,
            size,
            range_="modules",
            align=params.alignment,
            flags=flags,
            caller=caller,
        )
        if area is None:
            return None
        self._map_prot(area, PAGE_KERNEL_EXEC)
        if params.flags & MOD_ALLOC_SET_MEMORY:
            yield from self._protect(
                cpu, area.addr, -(-size // PAGE), params.set_memory
            )
        self.metrics.latency("module_alloc_type", self.env.now - t0)
        return area

    def _map_prot(self, area: VmArea, prot: int) -> None:
        """vmp->pgprot: vmalloc() maps PAGE_KERNEL here; the same PTE
        stores with PAGE_KERNEL_EXEC cost the same, so only the bits change."""
        pt = self.kernel.pagetables
        step = 1 << area.page_shift
        for addr in range(area.addr, area.addr + area.nr_pages * PAGE, step):
            pt.set_leaf(addr, area.page_shift, prot)

    def _protect(self, cpu: int, addr: int, npages: int, how: str):
        """module_memory_enable_protection() for the kinds of change used."""
        cpa = self.kernel.cpa
        if how == "rox":
            yield from cpa.set_memory_rox(cpu, addr, npages)
            return
        yield from cpa.set_memory_nx(cpu, addr, npages)
        if how == "nx_ro":
            yield from cpa.set_memory_ro(cpu, addr, npages)

    # -- the BPF pack on MOD_TEXT ------------------------------------------------
    def _exec_alloc(self, cpu: int, size: int):
        """bpf_jit_alloc_exec(): module_alloc_type(size, MOD_TEXT)."""
        return (
            yield from self.module_alloc_type(
                cpu, size, self.text_params, "bpf_prog_pack"
            )
        )

    def _new_region(self, cpu: int, size: int):
        """alloc_new_pack(): the memory comes back ROX; jit_fill_hole() is
        text_poke_set() in this series; module_memory_protect() is a no-op."""
        area = yield from self._exec_alloc(cpu, size)
        if area is not None:
            yield from self.kernel.text_poke.text_poke_set(cpu, area.addr, size)
        return area

    # -- the strategy interface ------------------------------------------------
    def alloc(self, cpu: int, size: int, kind: str):
        if kind == "bpf_prog":
            return (yield from super().alloc(cpu, size, kind))
        params, _ = self.kinds[kind]
        area = yield from self.module_alloc_type(cpu, size, params, kind)
        if area is None:
            return None
        if kind in MODULE_KINDS and params.poke:
            # move_module(): module_memory_invalidate_type() on new memory
            yield from self.kernel.text_poke.text_poke_set(cpu, area.addr, size)
        footprint = area.nr_pages * PAGE
        self.account(size, footprint)
        obj = ExecAlloc(area.addr, size, kind, PAGE_SHIFT, footprint, handle=area)
        follow_mapping(self.kernel, obj)
        return obj

    def write(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int = 1):
        """The type's fill (module_memory_fill_type()); for a module, writes
        past the first are relocations, which write_relocate_add() now
        applies with one text_poke() each, whatever the section, then
        text_poke_sync()."""
        if isinstance(obj.handle, PackImage):
            yield from super().write(cpu, obj, nbytes, writes)
            return
        how = self.kinds[obj.kind][1]
        relocs = writes - 1 if obj.kind in MODULE_KINDS else 0
        tp = self.kernel.text_poke
        if how == "poke":
            yield from tp.text_poke_copy(cpu, obj.addr, nbytes)
        elif how == "unprotect":
            yield from self._unprotected_copy(cpu, obj, nbytes, writes)
        else:
            yield self.env.timeout(int(self.copy_ns(nbytes)))
        if relocs > 0:
            yield from tp.text_poke_each(cpu, obj.addr, relocs, RELOC_BYTES, sync=True)

    def _unprotected_copy(self, cpu: int, obj: ExecAlloc, nbytes: int, writes: int):
        """module_memory_force_unprotect(), plain stores,
        module_memory_force_protect(): arch_prepare_bpf_trampoline()."""
        area = obj.handle
        cpa = self.kernel.cpa
        yield from cpa.set_memory_nx(cpu, area.addr, area.nr_pages)
        yield from cpa.set_memory_rw(cpu, area.addr, area.nr_pages)
        yield self.env.timeout(int(self.copy_ns(nbytes, writes)))
        yield from cpa.set_memory_rox(cpu, area.addr, area.nr_pages)

    def finalize(self, cpu: int, obj: ExecAlloc):
        """module_set_memory(): skipped for MOD_ALLOC_SET_MEMORY types; the
        plain data types get module_enable_data_nx() (and ro_after_init,
        finalized after init, module_enable_rodata_ro_after_init())."""
        if isinstance(obj.handle, PackImage):
            yield from super().finalize(cpu, obj)
            return
        params, _ = self.kinds[obj.kind]
        if not params.flags & MOD_ALLOC_SET_MEMORY:
            how = "nx_ro" if obj.kind == "module_ro_after_init" else "nx"
            area = obj.handle
            yield from self._protect(cpu, area.addr, -(-obj.size // PAGE), how)
        follow_mapping(self.kernel, obj)

    def update(self, cpu: int, obj: ExecAlloc, nbytes: int):
        """A live image changes through bpf_arch_text_copy() /
        text_poke_copy() (the dispatcher); data with plain stores."""
        if (
            not isinstance(obj.handle, PackImage)
            and self.kinds[obj.kind][1] == "memcpy"
        ):
            yield self.env.timeout(int(self.copy_ns(nbytes)))
            return
        yield from super().update(cpu, obj, nbytes)
