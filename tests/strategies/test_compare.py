"""The comparison issue 5 exists for: the same BPF workload under the five
executable-memory strategies of the RFC threads, side by side.

Directions asserted (exec-memory.md, calibration.md): with hundreds of small
programs, the pack and ROX-cache strategies need far fewer iTLB entries than
a page per program, and once their 2 MiB region exists they neither split
the direct map nor send all-CPU shootdowns per load, while module_alloc's
per-program set_memory_rox() does both (its CPA touches the direct-map
alias, which forces a flush_tlb_all: several all-CPU shootdowns per load in
the ro-then-x era, one since v6.2).
"""

from __future__ import annotations

import pytest

from simcore.config.load import load_workload
from simcore.engine import simulate
from tests.kernel import make_sim, run
from tests.strategies.exec_checks import SKYLAKE16, splits

FIVE = ["module_alloc", "bpf_prog_pack", "execmem_rox", "perm_alloc", "jitalloc"]
PACKED = ["bpf_prog_pack", "execmem_rox"]

WORKLOAD = f"""\
name: five
seed: 11
duration: 12ms
machine: {{profile: skylake-sp, cpus: 16}}
strategy: [{", ".join(FIVE)}]
sim: {{tlb_model: fast}}
workloads:
  - type: bpf_jit
    programs: 400
    size: {{dist: lognormal, median: 300B, p75: 700B}}
    load_cpus: 4
    exec: {{rate: 400000/s, popularity: {{zipf: 0.6}}}}
"""


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    p = tmp_path_factory.mktemp("five") / "w.yaml"
    p.write_text(WORKLOAD)
    return {r.strategy: r.metrics for r in simulate(load_workload(p))}


def test_packed_strategies_need_far_fewer_itlb_entries(five):
    base = five["module_alloc"]
    for s in PACKED:
        assert five[s]["itlb.misses"] < base["itlb.misses"] / 4, s
        assert five[s]["tlb.shootdowns"] < base["tlb.shootdowns"] / 10, s
    for s in FIVE:
        assert five[s]["bpf.progs_loaded"] == 400, s


def _load_many(strategy: str, n: int, proglen: int = 300):
    """Load one program, then n more; counters after the first and after
    all, and the all-CPU shootdowns of each later load."""
    sim = make_sim(machine=SKYLAKE16, strategy=strategy)
    c = sim.metrics.counters
    run(sim, sim.bpf.prog_load(0, proglen))
    first = (splits(sim), c.get("tlb.shootdowns", 0))
    per_load = []
    for _ in range(n):
        before = c.get("tlb.shootdowns", 0)
        run(sim, sim.bpf.prog_load(0, proglen))
        per_load.append(c.get("tlb.shootdowns", 0) - before)
    return sim, first, (splits(sim), c.get("tlb.shootdowns", 0)), per_load


@pytest.mark.parametrize("strategy", PACKED)
def test_no_new_splits_or_shootdowns_once_the_pack_exists(strategy):
    _, first, last, per_load = _load_many(strategy, 300)
    assert last[0] == first[0]
    assert max(per_load) == 0


def test_module_alloc_splits_the_direct_map_as_programs_load():
    sim, first, last, per_load = _load_many("module_alloc", 700)
    # 700 one-page programs span more than one 2M region of the direct map
    assert last[0] > first[0]
    # v6.2+: one set_memory_rox() per load, its alias forces one full flush
    assert min(per_load) >= 1
    assert sim.metrics.counters["tlb.full_flushes"] >= 700


def test_module_alloc_before_6_2_flushes_twice_per_load():
    sim = make_sim(machine=SKYLAKE16, kernel="{preset: '6.1'}")
    run(sim, sim.bpf.prog_load(0, 300))
    c = sim.metrics.counters
    before = c["tlb.shootdowns"]
    run(sim, sim.bpf.prog_load(0, 300))
    # set_memory_ro() then set_memory_x(): two CPAs, each a flush_tlb_all,
    # and the first one's vm_unmap_aliases() purges the verifier's
    # insn_aux_data, vfree()d lazily just before the JIT: one flush more
    assert c["tlb.shootdowns"] - before == 3
