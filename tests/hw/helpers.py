"""Build a Simulation from a few lines of workload YAML."""

from __future__ import annotations

import tempfile
from pathlib import Path

from simcore.config.load import load_workload
from simcore.engine import Simulation

BASE = """\
name: hwtest
seed: {seed}
duration: 1ms
machine: {machine}
workloads:
  - {{type: vmalloc_stress, cpus: 1, loops: 1}}
"""


def make_sim(
    machine: str = "{profile: small-test}", seed: int = 1, sets=()
) -> Simulation:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.yaml"
        p.write_text(BASE.format(machine=machine, seed=seed))
        return Simulation(load_workload(p, sets=list(sets)), "module_alloc")
