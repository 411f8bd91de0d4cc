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

from simcore.errors import ConfigError
from simcore.strict import Strict
from simcore.units import parse_duration, parse_size

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


class TlbArraySpec(_Sourced):
    sizes: list[Literal["4K", "2M", "1G"]]
    entries: int
    ways: int


class Tlb(Strict):
    itlb: list[TlbArraySpec]
    dtlb: list[TlbArraySpec]
    stlb: list[TlbArraySpec]
    stlb_hit_cycles: SFloat


class Walk(Strict):
    levels: SInt
    walkers: SInt
    pwc_entries: SInt


class Flush(Strict):
    invlpg_cycles: SFloat
    global_flush_cycles: SFloat
    cr3_flush_cycles: SFloat
    single_page_flush_ceiling: SInt
    ipi_send_ns: SFloat
    ipi_deliver_median_ns: SFloat
    ipi_deliver_sigma: SFloat
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
    slab_alloc_ns: SFloat
    rb_node_visit_ns: SFloat


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
    ``dram_bytes: 8GiB``, ``ipi_send_ns: 1us``."""
    if not isinstance(val, str):
        return val
    parse = (
        parse_size if key.endswith("_bytes") else parse_duration
        if key.endswith("_ns") else None
    )  # fmt: skip
    if parse is None:
        return val
    try:
        return parse(val)
    except ValueError as exc:
        raise ConfigError(str(exc), path=".".join(map(str, path))) from None


def _mark_override(item: Any) -> Any:
    if isinstance(item, dict) and "source" not in item:
        return {**item, "source": "workload override", "confidence": "override"}
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
