import numpy as np
import yaml

from simcore.hw.pagewalk import PageWalker
from simcore.profile import PROFILE_DIR, HwProfile
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
