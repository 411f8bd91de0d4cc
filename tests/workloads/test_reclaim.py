"""reclaim: shrink_slab() at a rate reaches every registered shrinker."""

from __future__ import annotations

import pytest

from simcore.kernel.vmscan import Shrinker, Shrinkers
from tests.kernel import make_sim, run
from tests.workloads import run_metrics

WL = """\
name: pressure
duration: 20ms
machine: {{profile: small-test}}
kernel: {{preset: "{preset}"}}
host: {{enabled: false}}
strategy: [perm_alloc]
workloads:
  - type: bpf_jit
    programs: 40
    churn: {{load_rate: 2000/s, lifetime: 2ms}}
  - {{type: reclaim, rate: 2000/s, priority: {priority}}}
"""


def test_perm_alloc_cache_shrinks_under_pressure(tmp_path):
    light = run_metrics(tmp_path, WL.format(preset="latest", priority=12))
    heavy = run_metrics(tmp_path, WL.format(preset="latest", priority=0))
    assert light["vmscan.shrink_slab_calls"] > 0
    # at priority 0 a call asks for everything freeable (times 4/seeks)
    assert heavy.get("vmscan.shrinker.perm_alloc.freed", 0) > light.get(
        "vmscan.shrinker.perm_alloc.freed", 0
    )
    assert heavy["vmscan.slabs_scanned"] > light.get("vmscan.slabs_scanned", 0)


@pytest.mark.parametrize(("preset", "registered"), [("6.6", False), ("6.9", True)])
def test_vmap_node_shrinker_from_6_9(preset, registered):
    sim = make_sim(kernel=f'{{preset: "{preset}"}}')
    names = [s.name for s in sim.kernel.shrinkers.list]
    assert ("vmap_node" in names) is registered


def test_do_shrink_slab_arithmetic_and_deferral():
    sim = make_sim()
    shr = Shrinkers(sim.kernel)
    asked = []

    def scan(cpu, nr):
        asked.append(nr)
        return nr
        yield

    s = Shrinker("t", lambda: 1000, scan)
    shr.register(s)
    # priority 2: (1000 >> 2) * 4 / 2 = 500 -> batches of 128, 116 deferred
    assert run(sim, shr.shrink_slab(0, 2)) == 384
    assert asked == [128, 128, 128]
    assert s.nr_deferred == 500 - 384
    # priority 0: 2000 asked plus the deferral, capped at twice freeable
    asked.clear()
    run(sim, shr.shrink_slab(0, 0))
    assert sum(asked) == 1920 and s.nr_deferred == 2000 + 116 - 1920
