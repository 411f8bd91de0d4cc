"""The RFC curve: workloads/sweep-rfc-curve.yaml on 2 local workers.

Per-job vmalloc latency for 1 to 32 test_vmalloc workers under the 6.1 and
6.9 presets, 64 points of 4 ms simulated: the sweep an engineer reruns many
times an hour while arguing an RFC, timed as they run it (``simcore sweep
FILE --workers 2`` into an empty folder, so every point runs; aggregation
and charts included). Target: <= 10 s wall on 2 cores.

    python benchmarks/bench_rfc.py [--repeat 1]
"""

from __future__ import annotations

import sys
import tempfile

from common import ROOT, Table, median, standalone, timed_command

SWEEP = ROOT / "workloads" / "sweep-rfc-curve.yaml"
POINTS = 64
WORKERS = 2
TARGET_S = 10.0


def measure(repeat: int = 1) -> Table:
    t = Table(
        f"RFC curve: `simcore sweep sweep-rfc-curve.yaml --workers {WORKERS}`, "
        f"{POINTS} points of 4 ms simulated, median of {repeat}",
        ["run", "wall s", "CPU s", "points/s", "peak MiB"],
        note="CPU s and peak: the command's own process (the workers, "
        "started by a fork server, are not its children)",
    )
    runs = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            cpu, wall, rss = timed_command(
                ["sweep", str(SWEEP), "-o", d, "--workers", str(WORKERS), "--quiet"]
            )
        runs.append((wall, cpu))
        t.add(i + 1, f"{wall:.1f}", f"{cpu:.1f}", f"{POINTS / wall:.1f}", rss >> 20)
    wall = median(w for w, _ in runs)
    t.figures = {
        "rfc_curve_s": round(wall, 2),
        "rfc_curve_cpu_s": round(median(c for _, c in runs), 2),
    }
    t.verdict(f"<= {TARGET_S:.0f} s wall", wall <= TARGET_S, f"{wall:.1f} s")
    return t


def main() -> int:
    return standalone(__doc__, measure)


if __name__ == "__main__":
    sys.exit(main())
