"""Shipped workloads on an arm64 profile: the arm64 kernel's flushes, text
patching and linear map, end to end."""

from __future__ import annotations

from pathlib import Path

from simcore.config.load import load_workload
from simcore.engine import Simulation

ROOT = Path(__file__).resolve().parents[2]
ARM = ("machine.profile=neoverse-n1", "machine.cpus=8")


def _run(name: str, strategy: str, *sets: str) -> dict[str, float]:
    # the one strategy run replaces the file's list, which may name x86-only
    # strategies (perm_alloc, bpf_prog_pack_2m)
    sets = (*ARM, f"strategy={strategy}", *sets)
    resolved = load_workload(ROOT / "workloads" / name, sets=list(sets))
    return Simulation(resolved, strategy).run().metrics


def test_bpf_jit_churn_on_arm64_broadcasts_and_never_splits():
    for strategy in ("module_alloc", "bpf_prog_pack"):
        m = _run("bpf-jit-churn.yaml", strategy, "duration=3ms")
        assert m["bpf.progs_loaded"] > 0
        # TLBI ...IS broadcasts, no shootdown IPIs
        assert m.get("tlb.ipis", 0) == 0 and m.get("tlb.shootdowns", 0) == 0
        assert m["tlb.broadcast_flushes"] > 0
        # rodata=full: the linear map is page-mapped from boot, never split
        assert m.get("directmap.level2_splits", 0) == 0
        assert m.get("directmap.level3_splits", 0) == 0
        assert m["directmap.1g_bytes"] == 0 and m["directmap.2m_bytes"] == 0
        # every JIT load ends in bpf_flush_icache(): one kick per load at least
        assert m["text_poke.sync_rounds"] >= m["bpf.progs_loaded"]


def test_rodata_full_costs_dtlb_reach():
    # a vmalloc per program load (module_alloc) and every CPU running code:
    # the host's kernel data is in the linear map
    args = ("bpf-jit-churn.yaml", "module_alloc", "duration=2ms")
    full = _run(*args, "kernel.rodata=full")
    on = _run(*args, "kernel.rodata=on")
    # the host's slab and page-cache data through a page-mapped linear map
    assert full["dtlb.misses.kernel"] > 1.2 * on["dtlb.misses.kernel"]
    assert full["pagewalk.cycles"] > on["pagewalk.cycles"]
