"""The shipped sweep files load and expand to the points they promise."""

from __future__ import annotations

from pathlib import Path

from simcore.sweep.points import expand
from simcore.sweep.spec import load_sweep

WORKLOADS = Path(__file__).resolve().parents[2] / "workloads"


def test_rfc_curve_is_64_points_of_1_to_32_workers_on_two_presets():
    sweep = load_sweep(WORKLOADS / "sweep-rfc-curve.yaml")
    points = expand(sweep)
    assert len(points) == 64
    combos = {
        (p.params["workloads[0].nr_threads"], p.params["kernel.preset"]) for p in points
    }
    assert combos == {(n, k) for n in range(1, 33) for k in ("6.1", "6.9")}


def test_every_shipped_sweep_loads():
    for path in sorted(WORKLOADS.glob("sweep-*.yaml")):
        assert expand(load_sweep(path)), path.name
