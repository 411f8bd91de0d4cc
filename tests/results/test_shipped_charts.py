"""Every chart of the results folder comes out of a shipped workload, not
only out of fixtures: the BPF JIT churn example, shortened, draws them all."""

from __future__ import annotations

from pathlib import Path

from simcore.config.load import load_workload
from simcore.engine import simulate
from simcore.results import charts
from simcore.results.writer import write_results
from tests.results.test_charts import _check_png, _check_svg

SHIPPED = Path(__file__).parents[2] / "workloads" / "bpf-jit-churn.yaml"


def test_the_shipped_bpf_workload_draws_every_chart(tmp_path):
    resolved = load_workload(
        SHIPPED,
        sets=["duration=3ms", "workloads[0].programs=150", "machine.cpus=8"],
    )
    folder = write_results(resolved, simulate(resolved), out_dir=tmp_path / "out")
    for stem in charts.CHARTS:
        _check_png(folder / f"{stem}.png")
        _check_svg(folder / f"{stem}.svg")
