"""Every metric a run emits is in the catalog, so summaries can group it,
mark its direction and `simcore list metrics` can explain it."""

from __future__ import annotations

import pytest

from simcore.config.load import load_workload
from simcore.engine import simulate
from simcore.metrics.catalog import lookup
from simcore.strategies import strategy_names

WORKLOAD = """\
name: catalog
seed: 5
duration: 3ms
machine: {{profile: small-test}}
strategy: {strategy}
workloads:
  - type: bpf_jit
    programs: 30
    churn: {{load_rate: 5000/s, lifetime: 1ms}}
    exec: {{rate: 50000/s}}
    attach: {{fentry: 0.3, xdp: 0.1}}
  - {{type: vmalloc_stress, cpus: 2, loops: 50}}
"""


@pytest.mark.parametrize(
    "strategy", [s for s in strategy_names() if not s.startswith("arena")]
)
def test_every_emitted_metric_is_catalogued(strategy, tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text(WORKLOAD.format(strategy=strategy))
    (res,) = simulate(load_workload(p))
    missing = sorted(k for k in res.metrics if lookup(k) is None)
    assert not missing, f"not in simcore/results/catalog.py: {missing}"
