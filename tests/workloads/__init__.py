"""Tests of the workload generators, the module loader and the captures.

``simulation`` builds a Simulation from workload text written next to the
test's files (so relative capture paths resolve), without running it.
"""

from __future__ import annotations

from pathlib import Path

from simcore.config.load import load_workload
from simcore.engine import Simulation

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "workloads" / "data"


def simulation(
    where: Path, text: str, strategy: str | None = None, sets: tuple[str, ...] = ()
) -> Simulation:
    p = where / "w.yaml"
    p.write_text(text)
    resolved = load_workload(p, sets=list(sets))
    return Simulation(resolved, strategy or resolved.cfg.strategy[0])


def run_metrics(where: Path, text: str, **kw) -> dict[str, float]:
    return simulation(where, text, **kw).run().metrics
