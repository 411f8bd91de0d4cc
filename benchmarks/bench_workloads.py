"""Every shipped workload: time and peak memory of ``simcore run``.

Each ``workloads/*.yaml`` runs as a user runs it (``python -m simcore run
FILE -o DIR --quiet``: imports, simulation of every strategy, results
folder, charts), in its own process. Sweep files are not workloads; the
quick sweep is timed through ``simcore sweep`` on one worker instead.

Columns: CPU seconds of the command (its own and its children's, from
wait4(), which on an idle machine is its wall time on one core), wall
seconds as measured on this shared machine, the simulation's share (the
``sim.wall_s`` of ``timing.json``, summed over strategies), and the
command's peak resident memory. Targets: every workload under 60 s and the
quickstart under 5 s, on one core.

    python benchmarks/bench_workloads.py [--repeat 3]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from common import MIB, ROOT, Table, median, standalone, timed_command

LIMIT_S = 60.0
QUICKSTART_S = 5.0
SWEEP = "sweep-quick.yaml"


def _sim_seconds(folder: Path) -> float:
    timing = json.loads((folder / "timing.json").read_text())
    return sum(v.get("sim.wall_s", 0.0) for v in timing.values())


def run_workload(path: Path) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        cpu, wall, rss = timed_command(["run", str(path), "-o", str(out), "--quiet"])
        return cpu, wall, _sim_seconds(out), rss


def run_sweep(path: Path) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        cpu, wall, rss = timed_command(
            ["sweep", str(path), "-o", d, "--workers", "1", "--quiet"]
        )
        return cpu, wall, float("nan"), rss


def shipped() -> list[Path]:
    return sorted((ROOT / "workloads").glob("*.yaml"))


def measure(repeat: int = 3) -> Table:
    t = Table(
        f"Shipped workloads: `simcore run FILE --quiet`, median of {repeat}",
        ["workload", "CPU s", "wall s", "simulation s", "peak MiB"],
        note="CPU s = the command's CPU time (one core); simulation s = "
        "sim.wall_s of timing.json; sweeps: `simcore sweep --workers 1`",
    )
    slowest, quick = ("", 0.0), None
    for path in shipped():
        sweep = path.name.startswith("sweep-")
        if sweep and path.name != SWEEP:
            continue
        fn = run_sweep if sweep else run_workload
        name = path.stem + (" (sweep)" if sweep else "")
        try:
            runs = [fn(path) for _ in range(repeat)]
        except RuntimeError as e:
            t.add(name, "failed", "-", "-", "-")
            t.verdict(f"{name} runs", False, str(e))
            continue
        cpu = median(r[0] for r in runs)
        sim = median(r[2] for r in runs)
        t.add(
            name,
            f"{cpu:.2f}",
            f"{median(r[1] for r in runs):.2f}",
            "-" if sweep else f"{sim:.2f}",
            f"{median(r[3] for r in runs) / MIB:.0f}",
        )
        if cpu > slowest[1]:
            slowest = (path.stem, cpu)
        if path.stem == "quickstart":
            quick = cpu
    t.verdict(
        f"every workload < {LIMIT_S:.0f} s",
        slowest[1] < LIMIT_S,
        f"slowest {slowest[0]}: {slowest[1]:.1f} s",
    )
    if quick is not None:
        t.verdict(
            f"quickstart < {QUICKSTART_S:.0f} s",
            quick < QUICKSTART_S,
            f"{quick:.1f} s",
        )
    return t


def main() -> int:
    return standalone(__doc__, measure)


if __name__ == "__main__":
    sys.exit(main())
