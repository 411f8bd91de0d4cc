"""Golden metrics: every shipped workload, shortened, gives the same bytes.

This is the safety net under refactoring. Each workload of ``workloads/``
(sweeps aside) runs every strategy it names for 1 ms of simulated time, and
its ``metrics.json`` must equal the stored file byte for byte. A recorded
trace (``sim.trace_out``) is held the same way, since the recorder hangs off
the kernel's entry points.

A change that moves a number on purpose regenerates the files with::

    SIMCORE_REGEN_GOLDEN=1 python -m pytest tests/test_golden_metrics.py

and names the change and its reason in the commit message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simcore import load_workload, simulate
from simcore.results.writer import dumps_metrics, metrics_doc

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden_metrics"
SHIPPED = sorted(
    p for p in (ROOT / "workloads").glob("*.yaml") if "sweep" not in p.name
)
REGEN = os.environ.get("SIMCORE_REGEN_GOLDEN") == "1"


def _check(name: str, text: str) -> None:
    golden = GOLDEN / name
    if REGEN:
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}: regenerate"
    assert text == golden.read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_workload_metrics_unchanged(path):
    resolved = load_workload(path, sets=["duration=1ms"])
    doc = metrics_doc(resolved, simulate(resolved))
    _check(f"{path.stem}.json", dumps_metrics(doc))


def test_recorded_trace_unchanged(tmp_path):
    out = tmp_path / "trace.txt"
    path = ROOT / "workloads" / "mixed-host.yaml"
    resolved = load_workload(
        path,
        sets=["duration=4ms", f"sim.trace_out={out}", "strategy=bpf_prog_pack"],
    )
    simulate(resolved)
    _check("mixed-host.trace", out.read_text())


def test_recorded_vmalloc_trace_unchanged(tmp_path):
    out = tmp_path / "trace.txt"
    path = ROOT / "workloads" / "quickstart.yaml"
    resolved = load_workload(
        path, sets=["duration=100us", "machine.cpus=4", f"sim.trace_out={out}"]
    )
    simulate(resolved)
    _check("quickstart.trace", out.read_text())
