"""Hardware profiles: ``hw_profiles/*.yaml`` as typed, sourced values.

Every number that describes the machine carries its ``source`` and a
``confidence`` mark next to it (see hw_profiles/README.md), so a reader of a
result can trace each constant back to a manual table or a lore message. A
workload may override any field under ``machine:``; an overridden value keeps
no source but is marked ``override``.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from simcore.errors import ConfigError
from simcore.strict import Strict
from simcore.units import parse_ns, parse_size
from simcore.yamlsrc import Located, PathT, format_path

Confidence = Literal["verified", "secondary", "recalled", "estimate", "override"]
PROFILE_DIR = Path(__file__).resolve().parents[1] / "hw_profiles"


class _Sourced(Strict):
    source: str
    confidence: Confidence
    # validation cases (by name) or publications (by Message-ID) this value
    # was chosen or derived from: a case is independent only when none of
    # the values it runs on names it or its source here
    fitted_to: list[str] = []


class SInt(_Sourced):
    value: int


class SFloat(_Sourced):
    value: float


class SBroadcast(_Sourced):
    value: Literal["none", "invlpgb", "tlbi"]


class SBool(_Sourced):
    value: bool


class IdleState(_Sourced):
    """One idle state as the cpuidle driver declares it (intel_idle's
    ``struct cpuidle_state``: exit_latency, target_residency, flags)."""

    name: str
    exit_ns: float
    residency_ns: float


class Cpu(Strict):
    """CPU features and errata the kernel's choices depend on."""

    # X86_FEATURE_PCID as the kernel uses it (setup_pcid(), arch/x86/mm/init.c)
    pcid: SBool
    # X86_BUG_CPU_MELTDOWN: page table isolation turns on by default
    # (pti_check_boottime_disable(), arch/x86/mm/pti.c)
    meltdown: SBool
    # shallowest first; a CPU idle for a whole run has long passed every
    # target residency, so the governor keeps it in the deepest state,
    # whose exit an IPI to it waits for (simcore.workloads.host)
    idle_states: list[IdleState]
    # x86: X86_FEATURE_INVLPGB (broadcast invalidation, AMD Zen 3+), which
    # kernels from v6.15 use for kernel ranges (kernel.invlpgb)
    invlpgb: SBool | None = None
    # arm64 only (None on x86): CTR_EL0.IDC / DIC, whether the kernel may
    # skip the D-cache clean / I-cache invalidate to the PoU when it writes
    # code (caches_clean_inval_pou(), arch/arm64/mm/cache.S); BBML2_NOABORT,
    # whether block mappings may be split live (the linear map's blocks
    # under rodata=full, arch/arm64/mm/mmu.c); FEAT_TLBIRANGE
    ctr_idc: SBool | None = None
    ctr_dic: SBool | None = None
    bbml2_noabort: SBool | None = None
    tlbi_range: SBool | None = None


class Topology(Strict):
    sockets: SInt
    cores_per_socket: SInt
    threads_per_core: SInt
    cores_per_llc_domain: SInt
    numa_nodes_per_socket: SInt


class C2C(Strict):
    """Cache-line transfer latency by distance: the cost of a lock hand-off."""

    smt: SFloat
    same_llc: SFloat
    cross_llc: SFloat
    cross_socket: SFloat


class Memory(Strict):
    l1_hit_ns: SFloat
    l2_hit_ns: SFloat
    llc_hit_ns: SFloat
    dram_local_ns: SFloat
    dram_remote_ns: SFloat
    l2_bytes: SInt
    llc_bytes: SInt
    dram_bytes: SInt  # installed RAM, all sockets together


class SSharing(_Sourced):
    """How the SMT siblings of a core use a TLB array
    (simcore/hw/tlb_geometry.py): one array each, one competitively shared
    array, or one array split between them."""

    value: Literal["private", "shared", "partitioned"]


class TlbArraySpec(_Sourced):
    sizes: list[Literal["4K", "2M", "1G"]]
    entries: int
    ways: int
    sharing: SSharing


class Tlb(Strict):
    itlb: list[TlbArraySpec]
    dtlb: list[TlbArraySpec]
    stlb: list[TlbArraySpec]
    # AMD Zen's L2 instruction TLB: when present it, not the STLB (then the
    # L2 DTLB, data only), is the second level of instruction fetches
    itlb2: list[TlbArraySpec] = []
    stlb_hit_cycles: SFloat


class SPwcKind(_Sourced):
    value: Literal["split", "unified"]


class Pwc(Strict):
    """Paging-structure caches of the page walker.

    ``split``: one cache per non-leaf level, as Intel describes them (SDM
    Vol. 3 section 4.10.3: PML5E, PML4E, PDPTE and PDE caches), sized by
    ``pml5`` (5-level hardware only) to ``pd``. ``unified``: one cache of
    ``entries`` holding the entries of every non-leaf level (AMD's page
    walk cache, Arm's walk entries in the L2 TLB).
    """

    kind: SPwcKind
    pml5: SInt | None = None
    pml4: SInt | None = None
    pdpt: SInt | None = None
    pd: SInt | None = None
    entries: SInt | None = None

    @model_validator(mode="after")
    def _sizes_match_kind(self) -> Pwc:
        split = ("pml4", "pdpt", "pd")
        if self.kind.value == "split":
            missing = [k for k in split if getattr(self, k) is None]
            if missing or self.entries is not None:
                raise ValueError(
                    "a split paging-structure cache gives pml4, pdpt and pd "
                    "(and pml5 on 5-level hardware), not entries"
                )
        elif self.entries is None or any(
            getattr(self, k) is not None for k in ("pml5", *split)
        ):
            raise ValueError("a unified page walk cache gives entries only")
        return self


class Walk(Strict):
    # paging levels in use: 4, or 5 with LA57 hardware and a 5-level kernel
    levels: SInt
    # the most the hardware supports (5 with LA57 on x86, LPA2 on arm64)
    max_levels: SInt
    walkers: SInt
    pwc: Pwc

    @model_validator(mode="after")
    def _levels_supported(self) -> Walk:
        lv, top = self.levels.value, self.max_levels.value
        if top not in (4, 5) or lv not in (4, 5) or lv > top:
            raise ValueError(
                f"walk.levels {lv} with walk.max_levels {top}: levels are 4 or "
                "5, and at most what the hardware supports"
            )
        if self.pwc.kind.value == "split" and top == 5 and self.pwc.pml5 is None:
            raise ValueError("5-level hardware with split caches gives pwc.pml5")
        return self


class Flush(Strict):
    invlpg_cycles: SFloat
    global_flush_cycles: SFloat
    cr3_flush_cycles: SFloat
    single_page_flush_ceiling: SInt
    ipi_round_median_ns: SFloat
    ipi_round_sigma: SFloat
    irq_entry_exit_ns: SFloat
    remote_stolen_ns: SFloat
    broadcast: SBroadcast
    broadcast_per_page_ns: SFloat
    broadcast_sync_ns: SFloat


class Locks(Strict):
    mutex_wakeup_ns: SFloat
    atomic_uncontended_ns: SFloat


class KernelCosts(Strict):
    """Per-operation software costs of kernel code paths on this CPU."""

    pte_write_ns: SFloat
    page_zero_ns: SFloat
    page_alloc_ns: SFloat
    # per-page cost of __alloc_pages_bulk() as a share of page_alloc_ns
    bulk_page_factor: SFloat
    # cost of freeing an order-0 page to the per-CPU list (free_unref_page,
    # free_hot_cold_page before v4.15) as a share of page_alloc_ns
    page_free_factor: SFloat
    slab_alloc_ns: SFloat
    rb_node_visit_ns: SFloat
    # arm64 only: the DSB ISHST + ISB that __set_pte() issues after writing
    # a valid kernel PTE (once per PTE before 5fdd05efa1cd, v6.16; once per
    # lazy-MMU batch after it: kernel.pte_barriers)
    pte_barrier_ns: SFloat | None = None
    # x86 only: a CPU running a site that text_poke_bp() has armed with
    # INT3 takes the trap, poke_int3_handler() emulates the new
    # instruction, and the trap returns (no single-step)
    int3_trap_ns: SFloat | None = None
    # x86 only: an optimized kprobe's hit, the jump to its detour buffer
    # and the handler call there, no trap
    optprobe_hit_ns: SFloat | None = None


class HwProfile(Strict):
    name: str
    description: str
    arch: Literal["x86_64", "arm64"]
    topology: Topology
    clock_ghz: SFloat
    c2c_ns: C2C
    memory: Memory
    tlb: Tlb
    walk: Walk
    flush: Flush
    locks: Locks
    kernel_costs: KernelCosts
    cpu: Cpu

    def cycles_to_ns(self, cycles: float) -> float:
        return cycles / self.clock_ghz.value

    @property
    def total_cpus(self) -> int:
        t = self.topology
        return t.sockets.value * t.cores_per_socket.value * t.threads_per_core.value


# Machine-section shortcuts: `sockets: 2` means topology.sockets.
SHORTCUTS = {
    "sockets": ("topology", "sockets"),
    "cores_per_socket": ("topology", "cores_per_socket"),
    "threads_per_core": ("topology", "threads_per_core"),
}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    """A profile name from hw_profiles/, or a path to a profile file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or "/" in name:
        return p
    return PROFILE_DIR / f"{name}.yaml"


def apply_overrides(raw: dict, overrides: dict, where: tuple = ()) -> dict:
    """Deep-merge plain override values into a raw profile mapping.

    A scalar replaces the ``value`` of a sourced leaf and marks it as an
    override; lists (TLB arrays) are replaced whole. Unknown names raise a
    ConfigError whose ``path`` is relative to the machine section.
    """
    out = copy.deepcopy(raw)
    for key, val in overrides.items():
        path = where + (key,)
        if key not in out:
            hint = difflib.get_close_matches(str(key), [str(k) for k in out], n=1)
            msg = f"unknown hardware profile field {key!r}"
            if hint:
                msg += f"; did you mean {hint[0]!r}?"
            raise ConfigError(msg, path=".".join(map(str, path)))
        cur = out[key]
        if isinstance(cur, dict) and "value" in cur and not isinstance(val, dict):
            out[key] = {
                "value": _with_units(str(key), val, path),
                "source": "workload override",
                "confidence": "override",
            }
        elif isinstance(cur, dict) and isinstance(val, dict):
            if "value" in cur and "value" in val:
                out[key] = val
            else:
                out[key] = apply_overrides(cur, val, path)
        elif isinstance(cur, list) and isinstance(val, list):
            out[key] = [_mark_override(v) for v in val]
        else:
            out[key] = val
    return out


def _with_units(key: str, val: Any, path: tuple) -> Any:
    """An override may carry units where the field is a size or a time:
    ``dram_bytes: 8GiB``, ``ipi_round_median_ns: 1us``."""
    if not isinstance(val, str):
        return val
    parse = _unit_parser(key)
    if parse is None:
        return val
    try:
        return parse(val)
    except ValueError as exc:
        raise ConfigError(str(exc), path=".".join(map(str, path))) from None


def _unit_parser(key: str):
    """Sizes are named ``*_bytes``, times ``*_ns``: those take units."""
    if key.endswith("_bytes"):
        return parse_size
    return parse_ns if key.endswith("_ns") else None


def with_units(located: Located) -> dict:
    """A profile file's values with their units turned into numbers, as a
    workload's overrides are: ``dram_bytes: {value: 384GiB, ...}``,
    ``exit_ns: 1.5us``. An unreadable one is reported at its line."""

    # a group named for its unit (c2c_ns: {smt: ..., same_llc: ...}) gives
    # it to its members
    def walk(node: Any, path: PathT, group=None) -> Any:
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, val in node.items():
            parse = _unit_parser(str(key)) or group
            here = (*path, key)
            if parse is not None and isinstance(val, dict) and "value" in val:
                val = {
                    **val,
                    "value": _converted(parse, val["value"], (*here, "value")),
                }
            elif parse is not None and not isinstance(val, dict):
                val = _converted(parse, val, here)
            is_group = isinstance(val, dict) and "value" not in val
            out[key] = walk(val, here, parse if is_group else None)
        return out

    def _converted(parse, val: Any, here: PathT) -> Any:
        if not isinstance(val, str):
            return val
        try:
            return parse(val)
        except ValueError as exc:
            raise ConfigError(
                str(exc),
                file=located.file,
                path=format_path(here),
                line=located.line_of(here),
            ) from None

    return walk(located.data, ())


def _mark_override(item: Any) -> Any:
    if isinstance(item, dict) and "source" not in item:
        marked = {**item, "source": "workload override", "confidence": "override"}
        # a TLB array's sharing is a sourced value of its own
        if "sharing" in item and not isinstance(item["sharing"], dict):
            marked["sharing"] = {
                "value": item["sharing"],
                "source": "workload override",
                "confidence": "override",
            }
        return marked
    return item


def values_only(node: Any) -> Any:
    """Strip sources: the plain values a resolved config records."""
    if isinstance(node, dict):
        if "value" in node and "source" in node:
            return node["value"]
        return {
            k: values_only(v)
            for k, v in node.items()
            if k not in ("source", "confidence", "fitted_to")
        }
    if isinstance(node, list):
        return [values_only(v) for v in node]
    return node
