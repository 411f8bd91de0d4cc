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
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MIB, ROOT, Table, median, standalone

import simcore

LIMIT_S = 60.0
QUICKSTART_S = 5.0
SWEEP = "sweep-quick.yaml"


# Runs ``python -m simcore ARGS`` and, as the interpreter exits, writes the
# process's own peak resident size (VmHWM) to the file named by
# SIMCORE_BENCH_PEAK. wait4()'s ru_maxrss cannot say it: Linux carries the
# high-water mark over fork and exec, so a child started by this process
# (which has simcore, numba and the benchmarks' state loaded) never reports
# less than this process's own size.
_PEAK_WRAPPER = """
import atexit, os, runpy, sys

def _peak():
    with open("/proc/self/status") as f:
        kib = next((ln.split()[1] for ln in f if ln.startswith("VmHWM:")), "0")
    with open(os.environ["SIMCORE_BENCH_PEAK"], "w") as out:
        out.write(kib)

atexit.register(_peak)
sys.argv[0] = "simcore"
runpy.run_module("simcore", run_name="__main__", alter_sys=True)
"""


def _timed(cmd: list[str]) -> tuple[float, float, int]:
    """(CPU s, wall s, peak RSS bytes) of a simcore command run to its end,
    on the simcore this benchmark imported. CPU s counts the command's
    children too (sweep workers); the peak is the command's own process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(simcore.__file__).resolve().parent.parent)]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    with (
        tempfile.TemporaryDirectory() as cwd,
        tempfile.TemporaryFile() as err,
    ):
        peak_file = Path(cwd) / "peak_kib"
        env["SIMCORE_BENCH_PEAK"] = str(peak_file)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _PEAK_WRAPPER, *cmd],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(tail[0] if tail else f"exit status {status}")
        peak = int(peak_file.read_text() or 0) * 1024 if peak_file.exists() else 0
    return usage.ru_utime + usage.ru_stime, wall, peak


def _sim_seconds(folder: Path) -> float:
    timing = json.loads((folder / "timing.json").read_text())
    return sum(v.get("sim.wall_s", 0.0) for v in timing.values())


def run_workload(path: Path) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        cpu, wall, rss = _timed(["run", str(path), "-o", str(out), "--quiet"])
        return cpu, wall, _sim_seconds(out), rss


def run_sweep(path: Path) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as d:
        cpu, wall, rss = _timed(
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
