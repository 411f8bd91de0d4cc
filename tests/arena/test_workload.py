"""The ``arena`` workload: patterns, both views, determinism, bad input,
and the user-range flush it relies on (the shipped examples are checked
with the others in tests/workloads/test_shipped.py)."""

import numpy as np
import pytest

from simcore.metrics.catalog import lookup
from tests.arena import quiet_sim, run_arena

BODY = """\
    arenas: 2
    size: 64MiB
    alloc: {{pages: 4}}
    populate: {{pages: 600}}
    churn: {{rate: 20000/s, lifetime: 300us}}
    bpf: {{cpus: 2, rate: 2000000/s, pattern: {pattern}, stray: 0.001}}
    user: {{cpus: 1, rate: 300000/s, pattern: {pattern}}}
"""


@pytest.mark.parametrize("pattern", ["uniform", "zipf", "scan", "hash"])
def test_patterns_touch_both_views(pattern):
    m = run_arena(BODY.format(pattern=pattern), "arena_4k", "6.13")
    assert m["arena.bpf_accesses"] > 10_000
    assert m["arena.user_accesses"] > 100
    # every first user touch is a fault; the kernel view never faults there
    assert m["arena.user.faulted_accesses"] == m["arena.user_faults"] > 0
    assert m["arena.bpf.faulted_accesses"] == m["arena.kernel_faults"]
    assert m["dtlb.mpki"] > 0
    for name in m:
        assert lookup(name) is not None, name


def test_scan_and_zipf_walk_less_than_uniform():
    def per_access(pattern):
        body = (
            BODY.format(pattern=pattern)
            .replace("600", "8192")
            .replace("64MiB", "256MiB")
        )
        return run_arena(body, "arena_4k", "6.13")["arena.bpf.stlb_misses_per_access"]

    uniform, zipf, scan = (per_access(p) for p in ("uniform", "zipf", "scan"))
    assert scan < uniform and zipf < uniform


def test_same_seed_same_metrics_other_seed_differs():
    body = BODY.format(pattern="zipf")
    a = run_arena(body, "arena_batched_free", "latest", duration="6ms")
    b = run_arena(body, "arena_batched_free", "latest", duration="6ms")
    c = run_arena(body, "arena_batched_free", "latest", duration="6ms", seed=2)
    assert a == b
    assert a != c


def test_user_population_allocates_through_faults():
    body = """\
    size: 16MiB
    populate: {pages: 100, by: user}
    bpf: {cpus: 1, rate: 100000/s}
    user: {cpus: 1, rate: 0/s}
"""
    m = run_arena(body, "arena_4k", "6.13", duration="2ms")
    assert m["arena.user_fault_allocs"] == 100
    assert m["mem.arena.allocated_bytes"] == 100 * 4096
    assert "arena.allocs" not in m


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("    size: 8GiB\n", "at most 4 GiB"),
        ("    populate: {pages: 5000}\n    size: 16MiB\n", "larger than the arena"),
        ("    bpf: {cpus: 0}\n", "bpf.cpus"),
        ("    churn: {rate: 10/s, sleepable: false}\n", "KF_SLEEPABLE"),
        ("    alloc: {pagez: 3}\n", "pagez"),
    ],
)
def test_bad_input_exits_2_naming_the_place(cli, write, tmp_path, body, words):
    text = (
        "name: bad\nduration: 1ms\nmachine: {profile: small-test}\n"
        'kernel: {preset: "6.13"}\nworkloads:\n  - type: arena\n' + body
    )
    code, _, err = cli("run", str(write(text)), "--quiet", "-o", str(tmp_path / "o"))
    assert code == 2, err
    assert words in err
    assert "Traceback" not in err


def test_user_range_flush_reaches_only_the_mm_cpus():
    sim = quiet_sim("arena_4k", "6.13")
    fl = sim.machine.flush
    ua = 0x7F00_0000_0000
    for cpu in range(4):
        sim.machine.tlb(cpu).lookup(np.array([ua], dtype=np.uint64), 12, "d")
    c = sim.metrics.counters
    ns = fl.user_range(0, ua, ua + 4096, (1, 2))
    assert ns > 0
    assert c["tlb.user_shootdowns"] == 1 and c["tlb.user_ipis"] == 2
    held = [bool(sim.machine.tlb(cpu).resident()) for cpu in range(4)]
    assert held == [True, False, False, True]  # CPUs 0 and 3 are not in the mm
    # past the ceiling the whole mm goes, but global kernel entries stay
    ka = 0xFFFFC90000000000
    sim.machine.tlb(1).lookup(np.array([ka, ua], dtype=np.uint64), 12, "d")
    fl.user_range(1, ua, ua + 64 * 4096, (1,))
    assert c["tlb.user_full_flushes"] == 1 and c["tlb.user_local_flushes"] == 1
    assert {base for _, base, _ in sim.machine.tlb(1).resident()} == {ka}
