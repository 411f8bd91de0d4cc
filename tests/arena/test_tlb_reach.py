"""STLB misses per BPF access against the arena's working set.

small-test is Skylake-SP's TLB: 64 4K L1 dTLB entries and a 1536-entry
STLB shared by 4K and 2M pages, so 4K reach is 6 MiB (1536 pages). Uniform
accesses over N 4K pages miss the STLB about 1 - 1536/N of the time past
that; arena_huge maps whole 2 MiB regions and keeps N/512 entries.
"""

import pytest

from tests.arena import run_arena

BODY = """\
    size: 256MiB
    alloc: {{pages: 512}}
    populate: {{pages: {ws}}}
    bpf: {{cpus: 1, rate: 20000000/s, pattern: uniform}}
    user: {{cpus: 1, rate: 0/s}}
"""
SIZES = (512, 1024, 2048, 4096, 16384)


def misses(strategy: str, ws: int, preset: str = "6.13") -> dict[str, float]:
    # the arena alone in the TLBs: the reach arithmetic, no host code
    return run_arena(
        BODY.format(ws=ws), strategy, preset, duration="6ms", host="{enabled: false}"
    )


@pytest.fixture(scope="module")
def table():
    return {
        (st, ws): misses(st, ws) for st in ("arena_4k", "arena_huge") for ws in SIZES
    }


def test_4k_misses_rise_past_stlb_reach(table):
    per = [table["arena_4k", ws]["arena.bpf.stlb_misses_per_access"] for ws in SIZES]
    print(
        "arena_4k STLB misses per access by pages:", dict(zip(SIZES, per, strict=True))
    )
    assert per == sorted(per)
    # inside reach: cold misses only
    assert per[0] < 0.02 and per[1] < 0.02
    # past reach: about 1 - 1536/N of uniform accesses walk
    for ws, got in zip(SIZES[2:], per[2:], strict=True):
        assert got == pytest.approx(1 - 1536 / ws, abs=0.06), ws
    assert table["arena_4k", 16384]["pagewalk.walks"] > 0


def test_huge_keeps_misses_low_and_reports_its_waste(table):
    for ws in SIZES:
        m = table["arena_huge", ws]
        assert m["arena.bpf.stlb_misses_per_access"] < 0.005, ws
        assert m["arena.huge_maps"] == -(-ws // 512)
    # 5000 pages need 10 regions: 120 pages backed but never allocated
    huge = misses("arena_huge", 5000)
    small = misses("arena_4k", 5000)
    assert huge["mem.arena.waste_bytes"] == (10 * 512 - 5000) * 4096
    assert huge["mem.arena.backed_bytes"] == 10 * 512 * 4096
    assert small["mem.arena.waste_bytes"] == 0
    assert huge["mem.arena.allocated_bytes"] == small["mem.arena.allocated_bytes"]
    assert small["arena.bpf.stlb_misses_per_access"] > 0.6


def test_huge_falls_back_to_4k_without_order9_pages():
    # a fully fragmented node has no free 2 MiB block left
    m = run_arena(
        BODY.format(ws=2048), "arena_huge", "6.13", knobs=", fragmentation: 1.0"
    )
    assert m.get("arena.huge_maps", 0) == 0
    assert m["arena.huge_fallbacks"] == 4
    assert m["mem.arena.waste_bytes"] == 0
    assert m["arena.bpf.stlb_misses_per_access"] > 0.2
