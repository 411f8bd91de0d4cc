"""SMT siblings sharing TLB structures, AMD's L2 iTLB, both models agreeing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.hw.tlb import L1_HIT, WALK, TlbArray, TlbGeometry
from simcore.hw.tlbs import make_core_tlbs, make_tlb
from tests.hw.helpers import make_sim
from tests.hw.reftlb import RefCore

MODELS = ["exact", "fast"]
USER = 0x7F12_3400_0000
KERNEL = 0xFFFF_C900_0000_0000


def geo(stlb_sharing: str, l1_sharing: str = "private", itlb2=()) -> TlbGeometry:
    """Small arrays, so that a few dozen pages fill them."""
    return TlbGeometry(
        itlb=(TlbArray((12, 21), 4, 4, l1_sharing),),
        dtlb=(TlbArray((12,), 4, 2, l1_sharing), TlbArray((21, 30), 4, 4, l1_sharing)),
        stlb=(TlbArray((12, 21), 32, 4, stlb_sharing),),
        itlb2=itlb2,
    )


def pages(n: int, base: int = USER) -> np.ndarray:
    return (base + (np.arange(n, dtype=np.uint64) << np.uint64(12))).astype(np.uint64)


# -- 1. sharing: who evicts whom -----------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_siblings_evict_each_others_entries_in_a_shared_stlb(model):
    t0, t1 = make_core_tlbs(geo("shared"), model, 2)
    mine = pages(24)
    assert t0.lookup(mine, 12, "d").stlb_misses == 24  # cold
    # the same pages on the sibling: its own walks (entries are per thread)
    assert t1.lookup(mine, 12, "d").stlb_misses == 24
    # the sibling's 32 pages of its own push thread 0's entries out
    t1.lookup(pages(32, KERNEL), 12, "d")
    again = t0.lookup(mine, 12, "d")
    assert again.stlb_misses > 0
    # alone on the core, the 24 pages stay: thread 0 hits its STLB
    (alone,) = make_core_tlbs(geo("shared"), model, 1)
    alone.lookup(mine, 12, "d")
    assert alone.lookup(mine, 12, "d").stlb_misses == 0


@pytest.mark.parametrize("model", MODELS)
def test_partitioned_stlb_halves_and_isolates(model):
    t0, t1 = make_core_tlbs(geo("partitioned"), model, 2)
    mine = pages(16)  # exactly one half: 16 entries, 4 sets x 4 ways
    t0.lookup(mine, 12, "d")
    t1.lookup(pages(64, KERNEL), 12, "d")  # the sibling thrashes its half
    assert t0.lookup(mine, 12, "d").stlb_misses == 0  # nothing of ours went
    # 24 pages overflow a half (where a whole 32-entry array holds them)
    t0.flush_all()
    t0.lookup(pages(24), 12, "d")
    assert t0.lookup(pages(24), 12, "d").stlb_misses > 0
    (alone,) = make_core_tlbs(geo("partitioned"), model, 1)
    alone.lookup(pages(24), 12, "d")
    assert alone.lookup(pages(24), 12, "d").stlb_misses == 0
    assert t0.occupancy("stlb") <= 16 and t1.occupancy("stlb") == 16


@pytest.mark.parametrize("model", MODELS)
def test_private_l1_copies_per_thread(model):
    t0, t1 = make_core_tlbs(geo("shared", l1_sharing="private"), model, 2)
    a = [USER + (i << 12) for i in range(4)]
    for x in a:
        t0.lookup_one(x, 12, "d")
        t1.lookup_one(x + (1 << 30), 12, "d")
    assert all(t0.lookup_one(x, 12, "d") == L1_HIT for x in a)


@pytest.mark.parametrize("model", MODELS)
def test_flushes_act_on_one_sibling_only(model):
    t0, t1 = make_core_tlbs(geo("shared", "shared"), model, 2)
    user, kern = USER, KERNEL + 4096  # one set each of the 2-set DTLB
    for t in (t0, t1):
        t.lookup_one(user, 12, "d")
        t.lookup_one(kern, 12, "d")
    both = t1.resident()
    t0.flush_all(include_global=False)  # CR3 write on thread 0
    assert t1.resident() == both
    assert t0.resident() == {("dtlb", kern, 12), ("stlb", kern, 12)}
    t0.invalidate_page(kern)
    assert t0.occupancy() == 0 and t1.resident() == both
    # a kernel full flush reaches every CPU: the shared arrays empty
    t0.flush_all()
    t1.flush_all()
    assert t0.occupancy() == t1.occupancy() == 0
    assert t0.lookup_one(user, 12, "d") == WALK


def test_partition_splits_sets_or_ways():
    assert TlbArray((12, 21), 1536, 12, "partitioned").part(2) == TlbArray(
        (12, 21), 768, 12, "partitioned"
    )
    assert TlbArray((12,), 64, 64, "partitioned").part(2).ways == 32
    with pytest.raises(ValueError):
        TlbArray((12,), 3, 3, "partitioned").part(2)
    with pytest.raises(ValueError):
        TlbArray((12,), 4, 4, "sliced")


# -- 2. AMD's L2 iTLB -----------------------------------------------------------------
ITLB2 = (TlbArray((12, 21), 32, 4, "shared"),)


@pytest.mark.parametrize("model", MODELS)
def test_l2_itlb_absorbs_what_a_one_level_itlb_sends_on(model):
    code = pages(24, KERNEL)
    data = pages(30)
    with_l2 = make_tlb(geo("shared", itlb2=ITLB2), model)
    one_level = make_tlb(geo("shared"), model)
    no_stlb = make_tlb(TlbGeometry(geo("shared").itlb, geo("shared").dtlb, ()), model)
    for tlb in (with_l2, one_level, no_stlb):
        tlb.lookup(data, 12, "d")
        tlb.lookup(code, 12, "i")
    # code misses the 4-entry L1 iTLB every pass: the L2 iTLB takes them
    st = with_l2.lookup(code, 12, "i")
    assert st.l1_misses == 24 and st.stlb_misses == 0
    # ... and never reaches the STLB, which keeps the data
    assert with_l2.occupancy("itlb2") == 24
    assert with_l2.resident("stlb") == {("stlb", int(a), 12) for a in data}
    assert with_l2.lookup(data, 12, "d").stlb_misses == 0
    # a one-level iTLB sends them to the STLB, where code evicts data ...
    assert one_level.lookup(data, 12, "d").stlb_misses > 0
    # ... or, without a second level, to the page walker every time
    assert no_stlb.lookup(code, 12, "i").stlb_misses == 24


@pytest.mark.parametrize("model", MODELS)
def test_l2_itlb_smashes_1g_and_takes_invalidations(model):
    tlb = make_tlb(geo("shared", itlb2=ITLB2), model)
    giga = 0xFFFF_8880_4000_0000
    assert tlb.lookup_one(giga, 30, "i") == WALK
    assert tlb.resident("itlb2") == {("itlb2", giga, 21)}
    assert tlb.occupancy("stlb") == 0
    tlb.invalidate_page(giga + 4096)
    assert tlb.occupancy() == 0


def test_machine_builds_siblings_and_the_l2_itlb():
    sim = make_sim("{profile: zen3-milan, sockets: 1, cores_per_socket: 2}")
    m = sim.machine
    assert m.topo.nr_cpus == 4  # 2 cores x SMT2: CPU n and n + 2 are siblings
    geo_ = m.tlb_geometry()
    assert geo_.itlb2 and geo_.itlb2[0].entries == 512
    assert {
        a.sharing for lv in ("itlb", "dtlb", "stlb", "itlb2") for a in geo_.level(lv)
    } == {"shared"}
    t0, t1, t2 = m.tlb(0), m.tlb(1), m.tlb(2)
    if m.tlb_model == "fast":
        assert t0._core is t2._core and t0._core is not t1._core
    assert t0.layout.thread == 0 and t2.layout.thread == 1
    t0.lookup_one(KERNEL, 12, "d")
    assert t2.resident() == frozenset() and t1.resident() == frozenset()


def test_offline_sibling_gives_its_partition_back():
    sim = make_sim("{profile: skylake-sp, sockets: 1, cores_per_socket: 4, cpus: 6}")
    m = sim.machine
    # cores 0 and 1 have both threads online, cores 2 and 3 one
    assert m.tlb(0).layout.threads == 2 and m.tlb(4).layout.threads == 2
    assert m.tlb(2).layout.threads == 1
    stlb = m.tlb(0).layout.arrays[5]
    assert stlb.page_shifts == (12, 21) and stlb.entries == 768
    assert m.tlb(2).layout.arrays[5].entries == 1536


# -- 3. exact == fast == reference, with siblings and the L2 iTLB --------------------
GEOS = {
    "shared": geo("shared", "shared"),
    "partitioned": geo("partitioned", "partitioned"),
    "mixed": geo("shared", "partitioned", itlb2=(TlbArray((12,), 8, 2, "private"),)),
    "amd": geo("shared", "shared", itlb2=ITLB2),
}


def page_addr(i: int, shift: int) -> int:
    base = KERNEL if i % 3 == 0 else USER
    return base + (i << shift)


def _ops(max_pages: int):
    thread = st.integers(0, 1)
    touch = st.tuples(
        st.just("touch"),
        thread,
        st.integers(0, max_pages - 1),
        st.sampled_from((12, 12, 12, 21, 30)),
        st.sampled_from("id"),
    )
    inval = st.tuples(
        st.just("range"),
        thread,
        st.integers(0, max_pages - 1),
        st.sampled_from((12, 21)),
        st.integers(1, 600),
    )
    flush = st.tuples(st.just("flush"), thread, st.booleans(), st.just(0), st.just(0))
    return st.lists(st.one_of(touch, touch, touch, touch, inval, flush), max_size=300)


def _apply(cpus, ref, op):
    kind, t, a, b, c = op
    if kind == "touch":
        addr = page_addr(a, b)
        want = ref.touch(t, addr, b, c)
        return want, [cpu[t].lookup_one(addr, b, c) for cpu in cpus]
    if kind == "range":
        start = page_addr(a, b)
        ref.invalidate_range(t, start, start + c * 4096)
        for cpu in cpus:
            cpu[t].invalidate_range(start, start + c * 4096)
    else:
        ref.flush_all(t, include_global=a)
        for cpu in cpus:
            cpu[t].flush_all(include_global=a)
    return None, [None, None]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(GEOS)), ops=_ops(48))
def test_hypothesis_siblings_exact_fast_and_reference_agree(name, ops):
    geometry = GEOS[name]
    ref = RefCore(geometry, 2)
    cpus = [make_core_tlbs(geometry, m, 2) for m in MODELS]
    for op in ops:
        want, got = _apply(cpus, ref, op)
        assert got == [want, want], op
    for t in (0, 1):
        assert cpus[0][t].resident() == cpus[1][t].resident() == ref.resident(t)


@pytest.mark.parametrize("name", sorted(GEOS))
def test_sibling_streams_fast_equals_exact(name):
    geometry = GEOS[name]
    rng = np.random.default_rng(len(name))
    cores = {m: make_core_tlbs(geometry, m, 2) for m in MODELS}
    for batch in range(60):
        t = batch % 2
        n = 400
        idx = rng.integers(0, 120, n)
        shifts = rng.choice(np.array([12, 12, 21, 30], np.uint8), n)
        addrs = np.array(
            [page_addr(int(i), int(s)) for i, s in zip(idx, shifts, strict=True)],
            dtype=np.uint64,
        )
        side = "i" if batch % 3 == 0 else "d"
        outs = {}
        for m in MODELS:
            out = np.zeros(n, np.int8)
            outs[m] = (cores[m][t].lookup(addrs, shifts, side, outcomes=out), out)
        assert outs["exact"][0] == outs["fast"][0]
        np.testing.assert_array_equal(outs["exact"][1], outs["fast"][1])
        if batch % 7 == 6:
            for m in MODELS:
                cores[m][1 - t].flush_all(include_global=False)
    for t in (0, 1):
        assert cores["exact"][t].resident() == cores["fast"][t].resident()


def test_workload_may_override_tlb_arrays_with_plain_sharing():
    sim = make_sim(
        '{profile: small-test, tlb: {itlb2: [{sizes: ["4K"], entries: 64, '
        "ways: 8, sharing: shared}]}}"
    )
    spec = sim.machine.profile.tlb.itlb2[0]
    assert spec.sharing.value == "shared" and spec.sharing.confidence == "override"
    assert sim.machine.tlb_geometry().itlb2 == (TlbArray((12,), 64, 8, "shared"),)
