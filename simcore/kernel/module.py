"""kernel/module/main.c and strict_rwx.c: loading and unloading a module.

``ModuleLoader.load()`` follows ``load_module()`` of the 6.4+ loader, where
each ``enum mod_mem_type`` is an allocation of its own
(``module_memory_alloc()``), step by step with the kernel's locks:

1. ``module_sig_check()`` and the ELF checks: CPU work on the file image;
   ``early_mod_check()`` takes ``module_mutex`` to look for a module of
   the same name (``module_patient_check_exists()``): a load racing one
   still in progress waits for it, then fails with -EEXIST or -EBUSY.
   Two loads of one module that both pass this check before either is
   listed both allocate, and the second frees its memory at step 3 (the
   waste of the 2022-23 duplicate-load reports); finit_module()'s
   ``idempotent()`` wait on the same file, added in 2023, is not modelled;
   Before it, the syscall copied the whole .ko file into a vmalloc() of
   its own (``copy_module_from_user()``, or ``kernel_read_file()`` for
   finit_module()), vfree()d by ``free_copy()`` once the module is formed,
   before its init runs;
2. ``layout_and_allocate()`` -> ``move_module()``: one allocation per
   non-empty type through the executable-memory strategy, ``PAGE_ALIGN``ed
   and zeroed; **no** ``module_mutex`` here, so loads on several CPUs
   allocate and copy in parallel;
3. ``add_unformed_module()`` under ``module_mutex``;
4. ``simplify_symbols()``: every undefined symbol goes through
   ``resolve_symbol()``, which takes ``module_mutex`` around
   ``find_symbol()`` (core kernel ksymtab, then every loaded module's
   exports); a symbol of a module still in its init waits for it
   (``resolve_symbol_wait()``);
5. ``apply_relocations()`` + ``post_relocation()``: relocation work, then
   the strategy writes each image, either as one copy (the relocations
   were applied in a writable buffer) or as one write per relocation into
   memory that is already ROX (``reloc_writes``);
6. ``complete_formation()``: ``module_mutex`` held across
   ``module_enable_rodata_ro()``, ``module_enable_data_nx()`` and
   ``module_enable_text_rox()``, i.e. the strategy's ``finalize`` of every
   type except ``MOD_RO_AFTER_INIT``;
7. ``do_init_module()``: the module's init function, then under
   ``module_mutex`` ``module_enable_rodata_ro_after_init()`` and queueing
   the init memory on ``init_free_list``; ``do_free_init()`` runs from a
   work item, waits for an RCU grace period and frees the init types.

``unload()`` follows ``delete_module()`` and ``free_module()``: refused
while other modules use it; the exit function; ``synchronize_rcu()`` with
``module_mutex`` held while the module leaves the list; every type freed,
``MOD_DATA`` last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, get_args

from simcore.constants import PAGE
from simcore.hooks import tracepoint
from simcore.kernel.execmem import ExecAlloc, Kind
from simcore.kernel.module_layout import (
    INIT,
    Layout,
    after_init_calls,
    formation_calls,
    layouts,
)
from simcore.kernel.util import copy_ns

if TYPE_CHECKING:
    from simcore.kernel.main import Kernel

# enum mod_mem_type (include/linux/module.h, 6.4+), in its order, as the
# strategies' Kind lists it
MOD_MEM_TYPES = tuple(k for k in get_args(Kind) if k.startswith("module_"))
INIT_TYPES = ("module_init_text", "module_init_data", "module_init_rodata")
CORE_TYPES = tuple(t for t in MOD_MEM_TYPES if t not in INIT_TYPES)
# complete_formation(): module_enable_rodata_ro(), module_enable_data_nx()
# (every non-text type), module_enable_text_rox(); MOD_RO_AFTER_INIT turns
# read-only only in do_init_module()
FORMATION_ORDER = (
    "module_rodata",
    "module_init_rodata",
    "module_data",
    "module_init_data",
    "module_text",
    "module_init_text",
)

# Costs of the loader's own CPU work, in cycles of the profile's clock.
# Estimates (no published per-step timings of load_module() were found):
# module_sig_check() hashes the whole image (SHA-512 at ~2 cycles/byte) and
# the ELF checks walk its section headers.
PARSE_CYCLES_PER_BYTE = 2
# estimate: one RSA-2048 public-key verification, ~30 us
SIG_VERIFY_NS = 30_000
# estimate: find_symbol() bisects the core kernel's ~30,000-entry ksymtab
# (15 strcmp of cold strings, ~40 cycles each) and stops there for a core
# kernel symbol ...
KSYMTAB_CYCLES = 600
# ... else it walks the module list, newest first: per module a state
# check and two small bisections (estimate)
MODULE_SYMTAB_CYCLES = 100
# estimate: share of a module's undefined symbols that the modules it uses
# export (the rest are core kernel symbols)
DEP_SYMBOL_SHARE = 0.3
# estimate: find_module_all() compares one name per listed module
MODULE_LIST_CYCLES = 20
# estimate: apply_relocate_add() per Elf64_Rela: load the entry and its
# symbol, compute, range-check, store into a writable buffer
RELOC_CYCLES = 10
# estimate: mod_sysfs_setup(), parse_args(), notifier chains: ~20 us
SYSFS_NS = 20_000
# estimate: synchronize_rcu() waits a few scheduler ticks at HZ=1000 on a
# lightly loaded machine
RCU_GP_NS = 4_000_000

# The .ko file beyond its SHF_ALLOC sections: an Elf64_Rela (24 bytes, the
# ELF-64 format) per relocation and an Elf64_Sym (24 bytes) plus its name
# (estimate: 24 bytes with the NUL) per symbol it imports or exports
ELF64_RELA = 24
ELF64_SYM = 24
SYMBOL_NAME_BYTES = 24

EEXIST = 17
EBUSY = 16


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    """A module to load: its memory per ``mod_mem_type`` and its links.

    ``sizes`` maps ``module_text`` ... ``module_init_rodata`` to bytes as
    laid out (before ``PAGE_ALIGN``); missing types are empty. ``deps``
    are the modules whose symbols it uses (loaded first, pinned while it
    is loaded). ``nr_undef`` undefined symbols are resolved one by one;
    ``nr_exports`` exported symbols are checked for duplicates.
    """

    name: str
    sizes: Mapping[str, int]
    nr_relocs: int = 0
    deps: tuple[str, ...] = ()
    nr_undef: int = 0
    nr_exports: int = 0
    init_ns: int = 0
    exit_ns: int = 0

    def __post_init__(self) -> None:
        bad = set(self.sizes) - set(MOD_MEM_TYPES)
        if bad:
            raise ValueError(f"unknown module memory types: {sorted(bad)}")
        if any(v < 0 for v in self.sizes.values()):
            raise ValueError("module memory sizes must not be negative")

    def size_of(self, kind: str) -> int:
        return self.sizes.get(kind, 0)

    @property
    def image_bytes(self) -> int:
        """Bytes of SHF_ALLOC sections: what the .ko file mostly carries."""
        return sum(self.sizes.values())

    @property
    def file_bytes(self) -> int:
        """The .ko file the syscall copies in: the sections, their
        relocations and the symbol table (stripped of debug information,
        as distributions ship modules)."""
        syms = self.nr_undef + self.nr_exports
        return (
            self.image_bytes
            + self.nr_relocs * ELF64_RELA
            + syms * (ELF64_SYM + SYMBOL_NAME_BYTES)
        )

    @property
    def core_bytes(self) -> int:
        """What /proc/modules shows once init memory is gone."""
        return sum(_page_align(self.size_of(t)) for t in CORE_TYPES)


def _page_align(n: int) -> int:
    return -(-n // PAGE) * PAGE


@dataclass(eq=False)
class LoadedModule:
    spec: ModuleSpec
    state: str = "unformed"  # unformed -> coming -> live -> going
    mem: dict[str, ExecAlloc] = field(default_factory=dict)
    uses: list[LoadedModule] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    formed: object = None  # SimPy event: init finished (or load failed)
    # before v6.4: the core and init layouts, by the kind they were
    # allocated as (simcore.kernel.module_layout); empty per type
    layouts: dict[str, Layout] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def text(self) -> ExecAlloc | None:
        return self.mem.get("module_text")


class ModuleLoader:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.env = kernel.env
        self.metrics = kernel.metrics
        self.hooks = kernel.hooks
        self.module_mutex = kernel.machine.mutex("module_mutex")
        cyc = kernel.profile.cycles_to_ns
        self.parse_byte_ns = cyc(PARSE_CYCLES_PER_BYTE)
        self.ksymtab_ns = cyc(KSYMTAB_CYCLES)
        self.modsym_ns = cyc(MODULE_SYMTAB_CYCLES)
        self.list_ns = cyc(MODULE_LIST_CYCLES)
        self.reloc_ns = cyc(RELOC_CYCLES)
        self.zero_page_ns = kernel.profile.kernel_costs.page_zero_ns.value
        self.modules: dict[str, LoadedModule] = {}  # the `modules` list
        self._init_free: list[tuple[LoadedModule, list[ExecAlloc]]] = []

    # -- load_module() -------------------------------------------------------
    @tracepoint("module_load")
    def load(self, cpu: int, spec: ModuleSpec, *, reloc_writes: str = "batched"):
        """Load ``spec``; returns the LoadedModule, or None if it failed.

        ``reloc_writes``: ``batched`` writes each image once (relocations
        applied in a writable copy), ``each`` writes every relocation
        separately into its final memory.
        """
        if reloc_writes not in ("batched", "each"):
            raise ValueError(f"reloc_writes must be batched or each: {reloc_writes}")
        env = self.env
        t0 = env.now
        vm = self.kernel.vmalloc
        # init_module()'s copy_module_from_user() / finit_module()'s
        # kernel_read_file(): the whole file in a vmalloc() of its own
        copy = yield from vm.vmalloc(cpu, spec.file_bytes, caller="load_module")
        if copy is None:
            self._fail("module.load_failures")
            return None
        # the file's bytes copied in (copy_from_user() / kernel_read()), then
        # parsed and its signature checked
        yield env.timeout(
            int(
                copy_ns(self.kernel, spec.file_bytes)
                + spec.image_bytes * self.parse_byte_ns
                + SIG_VERIFY_NS
            )
        )
        err = yield from self._patient_check_exists(cpu, spec.name)
        if err:
            yield from vm.vfree(cpu, copy)  # free_copy()
            self._fail("module.dup_loads")
            return None
        mod = LoadedModule(spec, formed=env.event())
        ok = yield from self._move_module(cpu, mod)
        if not ok:
            yield from vm.vfree(cpu, copy)
            mod.formed.succeed()
            self._fail("module.load_failures")
            return None
        # add_unformed_module(): re-check under the mutex, then list_add
        yield from self.module_mutex.hold(cpu, self.list_ns * len(self.modules))
        if spec.name in self.modules:
            yield from self._free_all(cpu, mod)
            yield from vm.vfree(cpu, copy)
            mod.formed.succeed()
            self._fail("module.dup_loads")
            return None
        self.modules[spec.name] = mod
        ok = yield from self._simplify_symbols(cpu, mod)
        if not ok:
            yield from self._unlink_and_free(cpu, mod)
            yield from vm.vfree(cpu, copy)
            self._fail("module.load_failures")
            return None
        yield from self._apply_relocations(cpu, mod, reloc_writes)
        # flush_module_icache(): flush_icache_range() of every memory
        # region (nothing on x86; an I-cache sync and an IPI round on arm64)
        for obj in mod.mem.values():
            yield from self.kernel.text_poke.flush_icache_range(cpu, obj.addr, obj.size)
        yield from self._complete_formation(cpu, mod)
        yield env.timeout(SYSFS_NS)
        yield from vm.vfree(cpu, copy)  # free_copy(), before do_init_module()
        yield from self._do_init_module(cpu, mod)
        self.metrics.inc("module.loads")
        self.metrics.latency("module_load", env.now - t0)
        return mod

    def _fail(self, counter: str) -> None:
        self.metrics.inc(counter)

    def _patient_check_exists(self, cpu: int, name: str):
        """early_mod_check(): a module of this name that is still forming is
        waited for; any module of this name makes the load fail."""
        yield from self.module_mutex.hold(cpu, self.list_ns * len(self.modules))
        old = self.modules.get(name)
        if old is None:
            return 0
        if old.state in ("unformed", "coming"):
            yield old.formed
        return -EEXIST if old.state == "live" else -EBUSY

    def _core_init(self) -> bool:
        """Whether loads use the pre-6.4 core and init layouts: the era's
        (kernel.module_layout) where the strategy serves them."""
        st = self.kernel.exec_alloc
        return self.kernel.knobs.module_layout == "core_init" and st.core_layout

    def _move_module(self, cpu: int, mod: LoadedModule):
        """module_memory_alloc() per non-empty type (v6.4+), or before v6.4
        one module_alloc() per layout, core then init: PAGE_ALIGN, allocate
        through the strategy, memset to zero; on failure free what was
        allocated."""
        st = self.kernel.exec_alloc
        if self._core_init():
            plan = [(lay.kind, lay.size, lay) for lay in layouts(mod.spec)]
        else:
            plan = [(k, _page_align(mod.spec.size_of(k)), None) for k in MOD_MEM_TYPES]
        for kind, size, lay in plan:
            if not size:
                continue
            if lay is not None:
                mod.layouts[kind] = lay
            obj = yield from st.alloc(cpu, size, kind)
            if obj is None:
                yield from self._free_all(cpu, mod)
                return False
            mod.mem[kind] = obj
            yield self.env.timeout(int(size // PAGE * self.zero_page_ns))
        return True

    def _simplify_symbols(self, cpu: int, mod: LoadedModule):
        """resolve_symbol() for each undefined symbol, ``module_mutex``
        taken around each find_symbol(); ref_module() for each dependency."""
        deps = []
        for name in mod.spec.deps:
            dep = self.modules.get(name)
            if dep is not None and dep.state in ("unformed", "coming"):
                # resolve_symbol_wait(): -EBUSY until the owner is live
                yield dep.formed
            if dep is None or dep.state != "live":
                return False
            deps.append(dep)
        mutex = self.module_mutex
        n = mod.spec.nr_undef
        from_deps = int(n * DEP_SYMBOL_SHARE) if deps else 0
        for i in range(n):
            ns = self.ksymtab_ns
            if i < from_deps:  # found halfway down the module list
                ns += self.modsym_ns * len(self.modules) / 2
            yield from mutex.hold(cpu, ns)
        for dep in deps:
            if dep.state != "live":  # strong_try_module_get() fails
                return False
            dep.users.add(mod.name)
            mod.uses.append(dep)
        return True

    def _apply_relocations(self, cpu: int, mod: LoadedModule, reloc_writes: str):
        """Relocation work, then each image written by the strategy.
        Relocations are spread over the types by size (estimate: text
        carries most of them, as it carries most of the bytes)."""
        st = self.kernel.exec_alloc
        spec = mod.spec
        yield self.env.timeout(int(spec.nr_relocs * self.reloc_ns))
        lays = mod.layouts

        def content(kind: str) -> int:
            lay = lays.get(kind)
            return lay.content if lay is not None else spec.size_of(kind)

        total = sum(content(k) for k in mod.mem) or 1
        for kind, obj in mod.mem.items():
            nbytes = content(kind)
            relocs = spec.nr_relocs * nbytes // total
            writes = 1 + relocs if reloc_writes == "each" else 1
            yield from st.write(cpu, obj, nbytes, writes)

    def _complete_formation(self, cpu: int, mod: LoadedModule):
        """``module_mutex`` held across verify_exported_symbols() and every
        permission change."""
        st = self.kernel.exec_alloc
        mutex = self.module_mutex
        extra = yield from mutex.take(cpu)
        # verify_exported_symbols(): each export must be found nowhere
        ns = (
            self.ksymtab_ns + self.modsym_ns * len(self.modules)
        ) * mod.spec.nr_exports
        yield self.env.timeout(int(ns + extra))
        if mod.layouts:
            yield from self._frob(cpu, mod, formation_calls)
        else:
            for kind in FORMATION_ORDER:
                obj = mod.mem.get(kind)
                if obj is not None:
                    yield from st.finalize(cpu, obj)
        mod.state = "coming"
        mutex.release(cpu)

    def _do_init_module(self, cpu: int, mod: LoadedModule):
        env = self.env
        yield env.timeout(mod.spec.init_ns)
        mod.state = "live"
        mutex = self.module_mutex
        yield from mutex.lock(cpu)
        if mod.layouts:
            yield from self._frob(cpu, mod, after_init_calls)
            mod.layouts.pop(INIT, None)
        ro = mod.mem.get("module_ro_after_init")
        if ro is not None:
            yield from self.kernel.exec_alloc.finalize(cpu, ro)
        init = [mod.mem.pop(k) for k in INIT_TYPES if k in mod.mem]
        if init:
            first = not self._init_free
            self._init_free.append((mod, init))
            if first:  # llist_add() returned true: schedule_work()
                env.process(self._do_free_init(cpu))
        mutex.release(cpu)
        mod.formed.succeed()

    def _frob(self, cpu: int, mod: LoadedModule, calls_of):
        """The pre-6.4 loader's set_memory_*() calls over the layouts'
        parts, each through the strategy that owns the memory."""
        st = self.kernel.exec_alloc
        bases = {k: mod.mem[k].addr for k in mod.layouts}
        for layout, fn, addr, npages in calls_of(bases, mod.layouts):
            yield from st.protect_layout(cpu, mod.mem[layout], fn, addr, npages)

    def _do_free_init(self, cpu: int):
        """do_free_init(): take the whole list, synchronize_rcu(), free."""
        yield self.env.timeout(RCU_GP_NS)
        batch, self._init_free = self._init_free, []
        st = self.kernel.exec_alloc
        for _mod, objs in batch:
            for obj in objs:
                yield from st.free(cpu, obj)
                self.metrics.inc("module.init_frees")

    # -- delete_module() -------------------------------------------------------
    @tracepoint("module_unload")
    def unload(self, cpu: int, mod: LoadedModule):
        """delete_module(); returns True, or False when the module is in use
        or not live (-EWOULDBLOCK / -EBUSY)."""
        env = self.env
        t0 = env.now
        mutex = self.module_mutex
        extra = yield from mutex.take(cpu)
        yield env.timeout(int(self.list_ns * len(self.modules) + extra))
        if mod.users or mod.state != "live" or self.modules.get(mod.name) is not mod:
            mutex.release(cpu)
            self.metrics.inc("module.unload_refused")
            return False
        mod.state = "going"
        mutex.release(cpu)
        yield env.timeout(mod.spec.exit_ns)
        # free_module(): module_unload_free() drops the references it held
        yield from mutex.hold(cpu, self.list_ns * len(mod.uses))
        for dep in mod.uses:
            dep.users.discard(mod.name)
        yield from self._unlink_and_free(cpu, mod)
        self.metrics.inc("module.unloads")
        self.metrics.latency("module_unload", env.now - t0)
        return True

    def _unlink_and_free(self, cpu: int, mod: LoadedModule):
        """list_del_rcu() and synchronize_rcu() with ``module_mutex`` held,
        then free_mod_mem()."""
        mutex = self.module_mutex
        extra = yield from mutex.take(cpu)
        self.modules.pop(mod.name, None)
        yield self.env.timeout(RCU_GP_NS + extra)
        mutex.release(cpu)
        yield from self._free_all(cpu, mod)
        if not mod.formed.triggered:
            mod.formed.succeed()

    def _free_all(self, cpu: int, mod: LoadedModule):
        """free_mod_mem(): every type, MOD_DATA last (it holds the module)."""
        st = self.kernel.exec_alloc
        data = mod.mem.pop("module_data", None)
        for kind in list(mod.mem):
            yield from st.free(cpu, mod.mem.pop(kind))
        if data is not None:
            yield from st.free(cpu, data)
