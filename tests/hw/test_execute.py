"""Batched execution: walk footprints, batch preparation, shift checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.hw.compiled import footprint, gather
from simcore.hw.tlb import MODELS, TlbGeometry, prepare_batch
from simcore.hw.tlbs import make_tlb
from tests.hw.helpers import make_sim

KERNEL = 0xFFFF_C900_0000_0000
USER = 0x0000_7F00_0000_0000


def reference(addrs: np.ndarray, shifts: np.ndarray) -> list[int]:
    """Distinct 2M regions, then distinct pages per walk class, by np.unique."""
    a = addrs.astype(np.uint64)
    out = [len(np.unique(a >> np.uint64(21)))]
    for sel, shift in ((shifts < 21, 12), ((shifts >= 21) & (shifts < 30), 21)):
        out.append(len(np.unique(a[sel] >> np.uint64(shift))))
    out.append(len(np.unique(a[shifts >= 30] >> np.uint64(30))))
    return out


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 200),
    span_bits=st.integers(13, 40),
    kernel=st.booleans(),
    mix=st.sampled_from(((12,), (21,), (12, 21), (12, 21, 30), (30,))),
    seed=st.integers(0, 2**32 - 1),
)
def test_footprint_counts_as_np_unique(n, span_bits, kernel, mix, seed):
    rng = np.random.default_rng(seed)
    base = np.uint64(KERNEL if kernel else USER)
    addrs = base + rng.integers(0, 1 << span_bits, n).astype(np.uint64)
    shifts = rng.choice(np.array(mix, dtype=np.uint8), n)
    out = np.full(4, -1, dtype=np.int64)
    footprint(*prepare_batch(addrs, shifts), out)
    assert out.tolist() == (reference(addrs, shifts) if n else [0, 0, 0, 0])


def test_walk_cost_of_a_mixed_batch():
    """Executor.run charges each class's walks at its own footprint."""
    sim = make_sim("{profile: small-test}")
    ex = sim.executor
    pages = np.arange(3000, dtype=np.uint64)
    addrs = np.concatenate(
        [
            np.uint64(KERNEL) + (pages << np.uint64(12)),
            np.uint64(USER) + (pages[:40] << np.uint64(21)),
        ]
    )
    shifts = np.concatenate([np.full(3000, 12, np.uint8), np.full(40, 21, np.uint8)])
    stats = sim.machine.tlb(0).lookup(addrs, shifts, "d")  # cold: every touch walks
    regions, p4k, p2m, _ = reference(addrs, shifts)
    want = stats.walks_4k * ex.walker.walk_cycles(12, p4k, regions)
    want += stats.walks_2m * ex.walker.walk_cycles(21, p2m, regions)
    assert stats.walks_4k and stats.walks_2m
    total, per_walk = ex._walk_cycles(addrs, shifts, stats)
    assert total == want
    assert per_walk[0] == ex.walker.walk_cycles(12, p4k, regions)


def test_prepare_batch_takes_simulator_batches_as_they_are():
    addrs = np.uint64(KERNEL) + np.arange(8, dtype=np.uint64) * np.uint64(4096)
    shifts = np.full(8, 12, dtype=np.uint8)
    a, s = prepare_batch(addrs, shifts)
    assert a.dtype == np.int64 and np.shares_memory(a, addrs) and s is shifts
    # arrays made by compiled code carry dtype objects of their own
    made = gather(
        np.arange(8),
        np.arange(8),
        np.ones(8, np.int64),
        np.ones(8, np.int64),
        addrs,
        shifts,
    )
    a2, s2 = prepare_batch(made[0], made[1])
    assert np.shares_memory(a2, made[0]) and s2 is made[1]
    assert np.array_equal(a2, a)
    # strided input is made contiguous, not refused
    a3, s3 = prepare_batch(addrs[::2], shifts[::2])
    assert a3.flags.c_contiguous and np.array_equal(a3, a[::2])


@pytest.mark.parametrize("model", MODELS)
def test_out_of_range_uint8_shift_refused_before_any_change(model):
    tlb = make_tlb(TlbGeometry.skylake_sp(), model)
    addrs = np.uint64(KERNEL) + np.arange(4, dtype=np.uint64) * np.uint64(4096)
    with pytest.raises(ValueError):
        tlb.lookup(addrs, np.array([12, 12, 12, 64], dtype=np.uint8), "i")
    assert tlb.occupancy() == 0
    assert tlb.lookup(addrs, np.full(4, 12, np.uint8), "i").l1_misses == 4
