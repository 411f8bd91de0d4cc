"""TLB models: exact vs a brute-force reference, fast vs exact, behaviour."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.hw.tlb import (
    L1_HIT,
    STLB_HIT,
    WALK,
    TlbArray,
    TlbGeometry,
    TlbStats,
)
from simcore.hw.tlbs import make_tlb
from tests.hw.reftlb import RefTlb

SHIFT_NAMES = {12: "4k", 21: "2m", 30: "1g"}

# -- geometries ----------------------------------------------------------------
SKYLAKE = TlbGeometry.skylake_sp()
# Small arrays so that streams of a few thousand touches evict a lot; the STLB
# has 6 sets (not a power of two) and the ITLB has no 1G array (fallback).
SMALL = TlbGeometry(
    itlb=(TlbArray((12,), 8, 2), TlbArray((21,), 4, 4)),
    dtlb=(TlbArray((12,), 8, 4), TlbArray((21,), 4, 2), TlbArray((30,), 2, 2)),
    stlb=(TlbArray((12, 21), 24, 4), TlbArray((30,), 4, 4)),
)
# AMD-like: fully associative L1s holding every size, an STLB without 1G
# entries (1G pages are smashed into 2M entries) and an ITLB without 1G.
AMD_LIKE = TlbGeometry(
    itlb=(TlbArray((12, 21), 6, 6),),
    dtlb=(TlbArray((12, 21, 30), 8, 8),),
    stlb=(TlbArray((12, 21), 48, 6),),
)
# No STLB at all, and a DTLB that cannot hold 4K pages (they bypass it).
NO_STLB = TlbGeometry(
    itlb=(TlbArray((12,), 4, 4),),
    dtlb=(TlbArray((21,), 4, 2),),
    stlb=(),
)
GEOMETRIES = {"skylake": SKYLAKE, "small": SMALL, "amd": AMD_LIKE, "nostlb": NO_STLB}

# -- address space used by the streams -------------------------------------------
# Per page size a user and a kernel region, aligned to the page size; page
# index i lives in the kernel region when i % 3 == 0.
REGIONS = {
    12: (0x7F12_3400_0000, 0xFFFF_C900_0000_0000),  # user mmap / vmalloc
    21: (0x7F00_0000_0000, 0xFFFF_EA00_0000_0000),  # THP / vmemmap
    30: (0x4000_0000_0000, 0xFFFF_8880_0000_0000),  # user 1G / direct map
}
MIXES = {
    "4k": {12: 1.0},
    "4k2m": {12: 0.7, 21: 0.3},
    "all": {12: 0.6, 21: 0.3, 30: 0.1},
}


def page_addr(idx: int, shift: int, offset: int = 0) -> int:
    user, kernel = REGIONS[shift]
    base = kernel if idx % 3 == 0 else user
    return base + (idx << shift) + (offset & ((1 << shift) - 1))


def make_stream(kind: str, n: int, pages: int, mix: dict[int, float], seed: int):
    """(addrs as uint64, shifts as uint8) for a page-index pattern and size mix."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        idx = rng.integers(0, pages, n)
    elif kind == "sequential":
        idx = np.arange(n) % pages
    elif kind == "strided":
        idx = (np.arange(n) * 16) % pages
    elif kind == "zipf":
        p = 1.0 / np.arange(1, pages + 1) ** 0.9
        ranks = rng.choice(pages, size=n, p=p / p.sum())
        idx = rng.permutation(pages)[ranks]
    else:
        raise ValueError(kind)
    sizes = np.array(sorted(mix))
    probs = np.array([mix[s] for s in sizes])
    shifts = rng.choice(sizes, size=n, p=probs / probs.sum()).astype(np.uint8)
    offsets = rng.integers(0, 1 << 62, n)
    addrs = [
        page_addr(int(i), int(s), int(o))
        for i, s, o in zip(idx.tolist(), shifts.tolist(), offsets.tolist(), strict=True)
    ]
    return np.array(addrs, dtype=np.uint64), shifts


def ref_stats(outcomes: list[int], shifts) -> TlbStats:
    st = TlbStats(accesses=len(outcomes))
    for o, s in zip(outcomes, shifts, strict=True):
        if o != L1_HIT:
            st.l1_misses += 1
        if o == WALK:
            st.stlb_misses += 1
            if s >= 30:
                st.walks_1g += 1
            elif s >= 21:
                st.walks_2m += 1
            else:
                st.walks_4k += 1
    return st


def chunks(n: int, size: int):
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


# -- 1. exact == brute-force reference ---------------------------------------------
STREAM_CASES = [
    (geo, kind, mix)
    for geo in ("small", "amd", "nostlb")
    for kind in ("random", "sequential", "strided", "zipf")
    for mix in MIXES
] + [("skylake", kind, mix) for kind in ("random", "zipf", "strided") for mix in MIXES]


@pytest.mark.parametrize("geo,kind,mix", STREAM_CASES)
def test_exact_matches_reference(geo, kind, mix):
    geometry = GEOMETRIES[geo]
    big = geo == "skylake"
    n, pages = (12_000, 3000) if big else (2500, 60)
    addrs, shifts = make_stream(
        kind, n, pages, MIXES[mix], seed=zlib.crc32(f"{geo}{kind}{mix}".encode())
    )
    ref = RefTlb(geometry)
    tlb = make_tlb(geometry, "exact")
    for c, (lo, hi) in enumerate(chunks(n, 700)):
        side = "d" if c % 3 else "i"
        want = [
            ref.touch(int(a), int(s), side)
            for a, s in zip(addrs[lo:hi].tolist(), shifts[lo:hi].tolist(), strict=True)
        ]
        got = np.zeros(hi - lo, dtype=np.int8)
        stats = tlb.lookup(addrs[lo:hi], shifts[lo:hi], side, outcomes=got)
        assert got.tolist() == want
        assert stats == ref_stats(want, shifts[lo:hi].tolist())
    assert tlb.resident() == ref.resident()


def _ops_strategy(max_pages: int):
    touch = st.tuples(
        st.just("touch"),
        st.integers(0, max_pages - 1),
        st.sampled_from((12, 12, 12, 21, 21, 30)),
        st.sampled_from("id"),
    )
    invlpg = st.tuples(
        st.just("invlpg"),
        st.integers(0, max_pages - 1),
        st.sampled_from((12, 21, 30)),
        st.integers(0, (1 << 30) - 1),
    )
    rng_op = st.tuples(
        st.just("range"),
        st.integers(0, max_pages - 1),
        st.sampled_from((12, 21, 30)),
        st.integers(1, 3000),
    )
    flush = st.tuples(st.just("flush"), st.booleans(), st.just(0), st.just(0))
    return st.lists(
        st.one_of(touch, touch, touch, touch, touch, touch, invlpg, rng_op, flush),
        max_size=250,
    )


def apply_op(tlb, op):
    kind, a, b, c = op
    if kind == "touch":
        return tlb.lookup_one(page_addr(a, b, a * 977), b, c)
    if kind == "invlpg":
        tlb.invalidate_page(page_addr(a, b, c))
    elif kind == "range":
        start = page_addr(a, b, 123)
        tlb.invalidate_range(start, start + c * 4096)
    else:
        tlb.flush_all(include_global=a)
    return None


@settings(max_examples=60, deadline=None)
@given(geo=st.sampled_from(("small", "amd", "nostlb")), ops=_ops_strategy(40))
def test_hypothesis_exact_and_fast_match_reference(geo, ops):
    geometry = GEOMETRIES[geo]
    ref = RefTlb(geometry)
    exact = make_tlb(geometry, "exact")
    fast = make_tlb(geometry, "fast")
    for op in ops:
        want = apply_op(ref, op)
        assert apply_op(exact, op) == want
        assert apply_op(fast, op) == want
    assert exact.resident() == ref.resident() == fast.resident()
    assert exact.occupancy() == fast.occupancy() == len(ref.resident())


@settings(max_examples=40, deadline=None)
@given(
    pages=st.lists(st.integers(0, 200), min_size=1, max_size=400),
    shift=st.sampled_from((12, 21, 30)),
    side=st.sampled_from("id"),
)
def test_hypothesis_batch_equals_reference(pages, shift, side):
    addrs = np.array([page_addr(p, shift) for p in pages], dtype=np.uint64)
    ref = RefTlb(SMALL)
    want = [ref.touch(int(a), shift, side) for a in addrs.tolist()]
    for model in ("exact", "fast"):
        out = np.zeros(len(pages), dtype=np.int8)
        stats = make_tlb(SMALL, model).lookup(addrs, shift, side, outcomes=out)
        assert out.tolist() == want
        assert stats == ref_stats(want, [shift] * len(pages))


# -- 2. fast == exact, with invalidations interleaved --------------------------------
@pytest.mark.parametrize("geo", ["skylake", "small", "amd", "nostlb"])
@pytest.mark.parametrize("kind", ["random", "sequential", "strided", "zipf"])
def test_fast_equals_exact_with_invalidations(geo, kind):
    geometry = GEOMETRIES[geo]
    big = geo == "skylake"
    n, pages = (30_000, 4000) if big else (6000, 80)
    addrs, shifts = make_stream(
        kind, n, pages, MIXES["all"], seed=len(kind) * 7 + len(geo)
    )
    rng = np.random.default_rng(5)
    exact = make_tlb(geometry, "exact")
    fast = make_tlb(geometry, "fast")
    total_e, total_f = TlbStats(), TlbStats()
    for c, (lo, hi) in enumerate(chunks(n, 997)):
        side = "i" if c % 4 == 1 else "d"
        out_e = np.zeros(hi - lo, dtype=np.int8)
        out_f = np.zeros(hi - lo, dtype=np.int8)
        se = exact.lookup(addrs[lo:hi], shifts[lo:hi], side, outcomes=out_e)
        sf = fast.lookup(addrs[lo:hi], shifts[lo:hi], side, outcomes=out_f)
        assert se == sf
        np.testing.assert_array_equal(out_e, out_f)
        total_e, total_f = total_e + se, total_f + sf
        # interleave one invalidation of each kind, on addresses in use
        k = int(rng.integers(lo, hi))
        addr = int(addrs[k])
        action = c % 5
        npages = int(rng.integers(1, 64))
        for tlb in (exact, fast):
            if action == 0:
                tlb.invalidate_page(addr)
            elif action == 1:
                tlb.invalidate_range(addr, addr + npages * 4096)
            elif action == 2:
                tlb.flush_all(include_global=False)
            elif action == 3:
                tlb.invalidate_range(addr - (1 << 31), addr + (1 << 31))
            elif c % 10 == 9:
                tlb.flush_all()
        assert exact.resident() == fast.resident()
    assert total_e == total_f
    assert total_e.accesses == n


def test_fast_equals_exact_int64_and_uint64_inputs():
    addrs, shifts = make_stream("zipf", 5000, 2000, MIXES["4k2m"], seed=3)
    a = make_tlb(SKYLAKE, "fast")
    b = make_tlb(SKYLAKE, "exact")
    c = make_tlb(SKYLAKE, "fast")
    sa = a.lookup(addrs, shifts, "d")
    sb = b.lookup(addrs.view(np.int64), shifts.astype(np.int64), "d")
    sc = c.lookup(np.repeat(addrs, 2)[::2], list(shifts), "d")  # strided view
    assert sa == sb == sc
    assert (addrs >> np.uint64(63)).any()  # kernel addresses were included


# -- 3. working sets from 0.1x to 10x STLB reach, and the LRU cliff -----------------
def test_working_set_sweep_agreement(capsys):
    reach = 1536  # STLB 4K entries
    worst = 0.0
    rows = []
    for factor in (0.1, 0.3, 1.0, 3.0, 10.0):
        pages = max(1, int(factor * reach))
        rng = np.random.default_rng(int(factor * 10))
        idx = rng.integers(0, pages, 40_000)
        addrs = (0x7F12_3400_0000 + (idx << 12)).astype(np.int64)
        stats = {}
        for model in ("exact", "fast"):
            tlb = make_tlb(SKYLAKE, model)
            stats[model] = tlb.lookup(addrs, 12, "d")  # cold start included
        e, f = stats["exact"], stats["fast"]
        for field in ("l1_misses", "stlb_misses"):
            ev, fv = getattr(e, field), getattr(f, field)
            rel = abs(fv - ev) / max(ev, 1)
            worst = max(worst, rel)
        if factor <= 0.3:
            # at most 4 pages per 12-way set: only cold misses walk
            assert e.stlb_misses == len(np.unique(idx))
        rows.append((factor, pages, e.stlb_misses / e.accesses))
    with capsys.disabled():
        print("\nworking set sweep (Skylake-SP STLB, uniform 4K):")
        for factor, pages, ratio in rows:
            print(f"  {factor:5.1f}x reach  {pages:6d} pages  walk ratio {ratio:.3f}")
        print(f"  worst relative difference fast vs exact: {worst:.4f}")
    assert worst <= 0.05
    # the walk ratio grows with the working set, towards 1 - reach/pages
    ratios = [r for _, _, r in rows]
    assert ratios == sorted(ratios)
    assert ratios[-1] > 0.85


def cyclic(pages: int, passes: int, base: int = 0x7F12_3400_0000) -> np.ndarray:
    return (base + ((np.arange(pages * passes) % pages) << 12)).astype(np.int64)


@pytest.mark.parametrize("model", ["exact", "fast"])
def test_lru_cliff_fully_associative(model):
    geometry = TlbGeometry(
        itlb=(TlbArray((12,), 8, 8),),
        dtlb=(TlbArray((12,), 8, 8),),
        stlb=(TlbArray((12,), 64, 64),),
    )
    for pages, walks_per_warm_pass in ((64, 0), (65, 65)):
        tlb = make_tlb(geometry, model)
        ref = RefTlb(geometry)
        cold = tlb.lookup(cyclic(pages, 1), 12, "d")
        assert cold.stlb_misses == pages
        warm = tlb.lookup(cyclic(pages, 3), 12, "d")
        assert warm.stlb_misses == 3 * walks_per_warm_pass
        assert warm.l1_misses == 3 * pages  # L1 (8 entries) always misses
        want = [ref.touch(int(a), 12, "d") for a in cyclic(pages, 4).tolist()]
        assert ref_stats(want, [12] * len(want)) == cold + warm


@pytest.mark.parametrize("model", ["exact", "fast"])
def test_lru_cliff_set_associative(model):
    # Skylake-SP STLB: 128 sets x 12 ways of consecutive 4K VPNs.
    for pages, walks_per_warm_pass in ((1536, 0), (1537, 13), (1536 + 128, 1664)):
        tlb = make_tlb(SKYLAKE, model)
        cold = tlb.lookup(cyclic(pages, 1), 12, "d")
        assert cold.stlb_misses == pages
        warm = tlb.lookup(cyclic(pages, 2), 12, "d")
        assert warm.stlb_misses == 2 * walks_per_warm_pass


# -- 4. behaviour --------------------------------------------------------------------
MODELS = ["exact", "fast"]


@pytest.mark.parametrize("model", MODELS)
def test_2m_pages_walk_far_less_than_4k(model):
    footprint = 64 << 20
    rng = np.random.default_rng(11)
    offsets = rng.integers(0, footprint, 50_000)
    base = 0x7F00_0000_0000
    addrs = (base + offsets).astype(np.int64)
    s4k = make_tlb(SKYLAKE, model).lookup(addrs, 12, "d")
    s2m = make_tlb(SKYLAKE, model).lookup(addrs, 21, "d")
    assert s4k.stlb_misses > 40_000  # 16384 pages against 1536 entries
    assert s2m.stlb_misses == 32  # cold misses only
    assert s2m.walks_2m == 32 and s2m.walks_4k == 0
    assert s2m.stlb_misses * 100 < s4k.stlb_misses


@pytest.mark.parametrize("model", MODELS)
def test_flush_without_globals_keeps_kernel_entries(model):
    tlb = make_tlb(SKYLAKE, model)
    kernel = [0xFFFF_C900_0000_0000 + (i << 12) for i in range(20)]
    kernel_2m = 0xFFFF_FFFF_A020_0000
    user = [0x7F12_3400_0000 + (i << 12) for i in range(20)]
    for a in kernel + user:
        assert tlb.lookup_one(a, 12, "d") == WALK
    assert tlb.lookup_one(kernel_2m, 21, "i") == WALK
    before = tlb.occupancy()
    tlb.flush_all(include_global=False)
    assert tlb.occupancy() == before - 2 * len(user)  # dtlb + stlb copies
    for a in kernel:
        assert tlb.lookup_one(a, 12, "d") == L1_HIT
    assert tlb.lookup_one(kernel_2m, 21, "i") == L1_HIT
    for a in user:
        assert tlb.lookup_one(a, 12, "d") == WALK
    tlb.flush_all()
    assert tlb.occupancy() == 0
    assert tlb.lookup_one(kernel[0], 12, "d") == WALK


@pytest.mark.parametrize("model", MODELS)
def test_invalidate_page_removes_exactly_that_page(model):
    tlb = make_tlb(SKYLAKE, model)
    pages = [0xFFFF_C900_0000_0000 + (i << 12) for i in range(16)]
    for a in pages:
        tlb.lookup_one(a, 12, "d")
        tlb.lookup_one(a, 12, "i")
    before = tlb.resident()
    victim = pages[5]
    tlb.invalidate_page(victim + 0x123)  # any byte of the page
    gone = before - tlb.resident()
    assert gone == {(lvl, victim, 12) for lvl in ("itlb", "dtlb", "stlb")}
    assert tlb.resident() <= before
    assert tlb.lookup_one(victim, 12, "d") == WALK
    for a in pages[:5] + pages[6:]:
        assert tlb.lookup_one(a, 12, "d") == L1_HIT


@pytest.mark.parametrize("model", MODELS)
def test_invalidation_covers_large_pages(model):
    tlb = make_tlb(SKYLAKE, model)
    huge = 0x7F00_0040_0000  # 2M page
    giga = 0xFFFF_8880_4000_0000  # 1G page
    tlb.lookup_one(huge, 21, "d")
    tlb.lookup_one(giga, 30, "d")
    tlb.lookup_one(giga, 30, "i")  # no 1G ITLB array: cached as a 2M entry
    assert ("itlb", giga, 21) in tlb.resident()
    assert ("dtlb", giga, 30) in tlb.resident()
    # a 4K INVLPG inside each large page drops the large entries
    tlb.invalidate_page(huge + 0x1F_F000)
    assert not [e for e in tlb.resident() if e[1] == huge]
    tlb.invalidate_range(giga + (5 << 21) + 4096, giga + (5 << 21) + 8192)
    left = tlb.resident()
    assert ("dtlb", giga, 30) not in left and ("stlb", giga, 30) not in left
    # the ITLB's smashed entry covers [giga, giga + 2M): untouched
    assert left == {("itlb", giga, 21)}
    tlb.invalidate_range(giga - 4096, giga + 1)
    assert tlb.occupancy() == 0


@pytest.mark.parametrize("model", MODELS)
def test_smashed_1g_pages(model):
    tlb = make_tlb(AMD_LIKE, model)
    giga = 0xFFFF_8880_4000_0000
    assert tlb.lookup_one(giga, 30, "d") == WALK
    assert tlb.resident("stlb") == {("stlb", giga, 21)}
    assert tlb.resident("dtlb") == {("dtlb", giga, 30)}
    # another 2M chunk of the same 1G page: DTLB hit, the STLB is not asked
    assert tlb.lookup_one(giga + (3 << 21), 30, "d") == L1_HIT
    tlb.flush_all()
    stats = tlb.lookup(
        np.array([giga + (i << 21) for i in range(4)], dtype=np.uint64), 30, "i"
    )
    # the ITLB (no 1G) and the STLB cache 2M chunks: each chunk walks once
    assert stats.stlb_misses == 4 and stats.walks_1g == 4
    assert tlb.occupancy("itlb") == 4 and tlb.occupancy("stlb") == 4


@pytest.mark.parametrize("model", MODELS)
def test_4k_and_2m_tags_do_not_alias(model):
    tlb = make_tlb(SKYLAKE, model)
    # vpn 0x200 at 4K and vpn 0x200 at 2M share a set index in the STLB
    a4k = 0x200 << 12
    a2m = 0x200 << 21
    assert tlb.lookup_one(a4k, 12, "d") == WALK
    assert tlb.lookup_one(a2m, 21, "d") == WALK
    assert tlb.lookup_one(a4k, 12, "d") == L1_HIT
    assert tlb.lookup_one(a2m, 21, "d") == L1_HIT


@pytest.mark.parametrize("model", MODELS)
def test_stlb_hit_refills_l1(model):
    tlb = make_tlb(SKYLAKE, model)
    a = 0x7F12_3400_0000
    assert tlb.lookup_one(a, 12, "d") == WALK
    assert tlb.lookup_one(a, 12, "i") == STLB_HIT  # ITLB misses, STLB shared
    assert tlb.lookup_one(a, 12, "i") == L1_HIT


# -- API ------------------------------------------------------------------------------
def test_make_tlb_rejects_unknown_model():
    with pytest.raises(ValueError):
        make_tlb(SKYLAKE, "che")


@pytest.mark.parametrize(
    "args",
    [
        ((12,), 10, 4),
        ((12,), 0, 1),
        ((12,), 8, 0),
        ((), 8, 8),
        ((12, 12), 8, 8),
        ((3,), 8, 8),
    ],
)
def test_geometry_validation(args):
    with pytest.raises(ValueError):
        TlbArray(*args)


def test_geometry_rejects_shift_in_two_arrays_of_a_level():
    with pytest.raises(ValueError):
        TlbGeometry(
            itlb=(TlbArray((12,), 8, 8), TlbArray((12, 21), 8, 8)), dtlb=(), stlb=()
        )


def test_skylake_geometry():
    g = TlbGeometry.skylake_sp()
    assert g.stlb[0].sets == 128 and g.stlb[0].page_shifts == (12, 21)
    assert g.itlb[1].fully_associative
    assert g.reach("stlb") == 6 << 20
    assert sum(a.entries for a in g.dtlb) == 100


@pytest.mark.parametrize("model", MODELS)
def test_bad_inputs(model):
    tlb = make_tlb(SKYLAKE, model)
    with pytest.raises(ValueError):
        tlb.lookup(np.zeros(3, dtype=np.int64), 12, "x")
    with pytest.raises(ValueError):
        tlb.lookup(np.zeros(3, dtype=np.int64), np.array([12, 12]), "d")
    with pytest.raises(ValueError):
        tlb.lookup(np.zeros(2, dtype=np.int64), np.array([12, 64]), "d")
    with pytest.raises(ValueError):
        tlb.occupancy("l3")
    assert tlb.lookup(np.zeros(0, dtype=np.int64), 12, "d") == TlbStats()
    tlb.invalidate_range(100, 100)  # empty range: no-op
    tlb.invalidate_range(0, 1 << 64)  # whole space
    assert tlb.occupancy() == 0


def test_stats_add():
    a = TlbStats(10, 5, 2, 1, 1, 0)
    b = TlbStats(1, 1, 1, 0, 0, 1)
    c = a + b
    assert c == TlbStats(11, 6, 3, 1, 1, 1)
    assert c.l1_hits == 5 and c.stlb_hits == 3 and c.walks == 3
    assert sum([a, b], TlbStats()) == c
