import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from simcore.hw.compiled import footprint
from simcore.hw.pagewalk import PageWalker
from simcore.hw.tlb import prepare_batch
from simcore.profile import PROFILE_DIR, HwProfile, apply_overrides
from tests.hw.helpers import make_sim


def walker(name="skylake-sp"):
    raw = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    return PageWalker(HwProfile.model_validate(raw))


def test_walk_cost_grows_with_page_table_footprint():
    w = walker()
    small = w.walk_cycles(12, 1_000, 2)
    mid = w.walk_cycles(12, 2_000_000, 4_000)
    big = w.walk_cycles(12, 200_000_000, 400_000)
    assert small < mid < big
    assert big > 200  # PTE and PDE from DRAM: "200+ cycles" (hardware.md 2)
    assert small < 50  # entries cached: "~20-50 cycles"


def test_huge_leaf_skips_levels():
    w = walker()
    assert w.walk_cycles(21, 100_000, 100_000) < w.walk_cycles(
        12, 100_000 * 512, 100_000
    )
    assert w.walk_cycles(30, 10, 10) <= w.walk_cycles(21, 10, 10)


def test_executor_counts_misses_and_charges_time():
    sim = make_sim("{profile: small-test}")
    base = 0xFFFFFFFFA0000000
    pages = 4000  # past the 1536-entry STLB: walks on every pass
    addrs = np.uint64(base) + np.arange(pages, dtype=np.uint64) * np.uint64(4096)
    shifts = np.full(pages, 12, dtype=np.uint8)
    ns1 = sim.executor.run(0, addrs, shifts, "i", instructions=100_000)
    ns2 = sim.executor.run(0, addrs, shifts, "i", instructions=100_000)
    c = sim.metrics.counters
    assert c["itlb.misses"] == 2 * pages and c["stlb.misses"] == 2 * pages
    assert ns2 > 0 and ns1 == ns2
    huge = np.full(pages, 21, dtype=np.uint8)
    sim.executor.run(1, addrs, huge, "i", instructions=100_000)
    ns_huge = sim.executor.run(1, addrs, huge, "i", instructions=100_000)
    assert ns_huge < ns2 / 20  # 2M pages: 8 pages, everything hits


def walker_with(name: str, **walk) -> PageWalker:
    """A profile's walker with ``walk`` fields overridden (plain values)."""
    raw = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    return PageWalker(HwProfile.model_validate(apply_overrides(raw, {"walk": walk})))


def test_five_level_walk_costs_more_when_upper_levels_miss():
    four = walker_with("icelake-sp", levels=4)
    five = walker_with("icelake-sp", levels=5)
    # a footprint spread over many PML4 and PML5 entries: the upper
    # paging-structure caches (4 PML4E, 2 PML5E) cannot hold them
    args = (12, 50_000, 5_000, 3_000, 600, 40)
    assert five.walk_cycles(*args) > four.walk_cycles(*args)
    # with the upper levels cached, the fifth level costs nothing
    small = (12, 50_000, 5_000, 3, 1, 1)
    assert five.walk_cycles(*small) == pytest.approx(four.walk_cycles(*small))
    # the same with every paging-structure cache empty: one more read
    bare = {"pml5": 0, "pml4": 0, "pdpt": 0, "pd": 0}
    four0 = walker_with("icelake-sp", levels=4, pwc=bare)
    five0 = walker_with("icelake-sp", levels=5, pwc=bare)
    extra = five0.walk_cycles(*small) - four0.walk_cycles(*small)
    assert extra == pytest.approx(five0.line_cycles(64))


def test_each_level_costs_where_its_lines_live():
    w = walker("skylake-sp")
    bare = walker_with("skylake-sp", pwc={"pml4": 0, "pdpt": 0, "pd": 0})
    # a hot, tiny working set: one line per level, all in L2
    assert w.walk_cycles(12, 1, 1) == pytest.approx(w.l2_cycles)
    assert bare.walk_cycles(12, 1, 1) == pytest.approx(4 * w.l2_cycles)
    # PTE lines of 10M pages (80 MB) come from DRAM, the PD lines of 2M
    # regions (16 MB) from the LLC (20 MB of a 38.5 MiB LLC for tables)
    cost = bare.walk_cycles(12, 10_000_000, 2_000_000)
    assert cost == pytest.approx(w.dram_cycles + w.llc_cycles + 2 * w.l2_cycles)
    # a 2M leaf reads no PT, a 1G leaf no PD either
    assert bare.walk_cycles(21, 1, 1) == pytest.approx(3 * w.l2_cycles)
    assert bare.walk_cycles(30, 1, 1) == pytest.approx(2 * w.l2_cycles)


def test_pde_cache_hit_ratio_follows_the_2m_footprint():
    w = walker("skylake-sp")  # 32-entry PDE cache
    pte = w.walk_cycles(12, 100, 32)
    half = w.walk_cycles(12, 100, 64)  # half of the PD entries cached
    assert half - pte == pytest.approx(0.5 * w.line_cycles(64 * 8))


def test_unified_cache_serves_the_upper_levels_first():
    w = walker("zen3-milan")  # one 64-entry cache for every non-leaf level
    assert w.unified and w.pwc_total == 64
    # 60 PDPT entries leave 64 - 1 - 60 = 3 for 300 PD entries
    cost = w.walk_cycles(12, 100, 300, 60, 1)
    pt = w.line_cycles(100 * 8)
    pd = w.line_cycles(300 * 8)
    assert cost == pytest.approx(pt + (1 - 3 / 300) * pd)


@pytest.mark.parametrize(
    "walk",
    [
        {"levels": 5},  # skylake-sp has no LA57
        {"levels": 3},
        {"pwc": {"kind": "unified"}},  # unified without entries
    ],
)
def test_walk_fields_are_checked(walk):
    raw = yaml.safe_load((PROFILE_DIR / "skylake-sp.yaml").read_text())
    with pytest.raises(ValidationError):
        HwProfile.model_validate(apply_overrides(raw, {"walk": walk}))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 300),
    span_bits=st.integers(13, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_footprint_counts_upper_level_regions(n, span_bits, seed):
    rng = np.random.default_rng(seed)
    base = np.uint64(0xFF00_0000_0000_0000)
    addrs = base + rng.integers(0, 1 << span_bits, n).astype(np.uint64)
    shifts = np.full(n, 12, np.uint8)
    out = np.full(7, -1, dtype=np.int64)
    footprint(*prepare_batch(addrs, shifts), out)
    want = [len(np.unique(addrs >> np.uint64(s))) for s in (21, 12)]
    want += [0, 0] + [len(np.unique(addrs >> np.uint64(s))) for s in (30, 39, 48)]
    assert out.tolist() == want
    short = np.full(4, -1, dtype=np.int64)  # the executor's four slots
    footprint(*prepare_batch(addrs, shifts), short)
    assert short.tolist() == want[:4]
