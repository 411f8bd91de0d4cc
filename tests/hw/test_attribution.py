"""TLB misses attributed to their owners sum to the totals, and mixing
owners in one batch changes nothing the TLBs see."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.metrics import OWNERS
from tests.hw.helpers import make_sim
from tests.workloads import ROOT

KERNEL = 0xFFFF_C900_0000_0000
USER = 0x0000_7F00_0000_0000
BASES = ("itlb.misses", "dtlb.misses", "stlb.misses", "pagewalk.cycles")


def _owned_sum(counters, base):
    return sum(counters.get(f"{base}.{o}", 0) for o in OWNERS)


def _batch(rng, n):
    user = np.uint64(USER) + (
        rng.integers(0, 4096, n).astype(np.uint64) << np.uint64(12)
    )
    kern = np.uint64(KERNEL) + (
        rng.integers(0, 64, n).astype(np.uint64) << np.uint64(21)
    )
    pick = rng.random(n) < 0.5
    addrs = np.where(pick, user, kern)
    shifts = np.where(pick, 12, 21).astype(np.uint8)
    codes = np.where(pick, 0, 1).astype(np.int64)
    return addrs, shifts, codes


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3000), side=st.sampled_from("id")
)
def test_a_mixed_batch_splits_exactly_and_sees_the_same_tlb(seed, n, side):
    rng = np.random.default_rng(seed)
    addrs, shifts, codes = _batch(rng, n)
    mixed, plain = make_sim(), make_sim()
    ns_mixed = mixed.executor.run(
        0, addrs, shifts, side, n, owner=(codes, ("user", "kernel"))
    )
    ns_plain = plain.executor.run(0, addrs, shifts, side, n, owner="kernel")
    cm, cp = mixed.metrics.counters, plain.metrics.counters
    assert ns_mixed == ns_plain
    for base in BASES:
        assert cm.get(base, 0) == cp.get(base, 0)
        assert _owned_sum(cm, base) == cm.get(base, 0), base
        assert _owned_sum(cp, base) == cp.get(base, 0), base
    # a cold TLB: every distinct page of each owner misses at least once
    first = "itlb.misses" if side == "i" else "dtlb.misses"
    for code, owner in enumerate(("user", "kernel")):
        if (codes == code).any():
            assert cm[f"{first}.{owner}"] >= 1


@pytest.mark.parametrize("strategy", ["module_alloc", "bpf_prog_pack"])
def test_a_shipped_host_attributes_every_miss(strategy):
    from simcore import load_workload, simulate

    path = ROOT / "workloads" / "mixed-host.yaml"
    resolved = load_workload(path, sets=["duration=2ms", f"strategy={strategy}"])
    (result,) = simulate(resolved)
    m = result.metrics
    for base in BASES:
        if m.get(base):
            assert sum(m.get(f"{base}.{o}", 0) for o in OWNERS) == m[base], base
    # BPF, modules, kernel and user code all ran on this host
    assert all(
        m.get(f"itlb.misses.{o}", 0) > 0 for o in ("bpf", "modules", "kernel", "user")
    )
