"""Shared by the benchmarks: isolated measurements, workloads from text.

Each measurement runs in a forked child. The parent has imported simcore
and loaded the compiled TLB kernels first, so the child pays for neither,
and the child's peak resident memory, less what it started with, is the
memory the simulation itself needed: a figure that would be lost in the
interpreter's own footprint if read from a fresh process.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import simcore  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import simpy

from simcore.config.load import load_workload
from simcore.engine import Simulation

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def simulation(text: str, strategy: str | None = None, sets=()) -> Simulation:
    """A Simulation of the workload file ``text`` (first strategy if None)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bench.yaml"
        p.write_text(text)
        resolved = load_workload(p, sets=list(sets))
    return Simulation(resolved, strategy or resolved.cfg.strategy[0])


class Stopwatch:
    """Wall and CPU seconds of a block.

    The machine is shared: wall time depends on what else runs, the CPU
    time of this process much less. Rates and ratios are taken on CPU
    seconds (what the work costs one core), wall seconds are shown beside.
    """

    def __enter__(self) -> Stopwatch:
        self.wall = self.cpu = 0.0
        self._w = time.perf_counter()
        self._c = time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu = time.process_time() - self._c
        self.wall = time.perf_counter() - self._w


def bare_simpy(events: int, procs: int) -> float:
    """CPU seconds for bare SimPy to process ``events`` timeouts in
    ``procs`` loops: the floor any SimPy model sits on."""
    env = simpy.Environment()
    per = max(1, events // procs)

    def loop(env, n):
        for _ in range(n):
            yield env.timeout(1)

    for _ in range(procs):
        env.process(loop(env, per))
    with Stopwatch() as sw:
        env.run()
    return sw.cpu


def warm_up() -> None:
    """Load the compiled TLB kernels (numba's disk cache) in the parent."""
    from simcore.hw.tlb_fast import warm_up as load_kernels

    load_kernels()


# -- isolated measurement -----------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    # writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child(send, fn, args) -> None:
    try:
        ok = _reset_peak()
        start = _status_kib("VmRSS")
        value = fn(*args)
        peak = _status_kib("VmHWM") if ok else None
        grew = None if peak is None or start is None else (peak - start) * 1024
        send.send((True, value, grew))
    except BaseException:  # noqa: BLE001 - reported to the parent
        send.send((False, traceback.format_exc(), None))
    finally:
        send.close()


def in_child(fn: Callable[..., Any], *args) -> tuple[Any, int | None]:
    """``fn(*args)`` in a forked child: (its value, peak memory growth in
    bytes, None where the platform cannot tell)."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args))
    proc.start()
    send.close()
    try:
        ok, value, grew = recv.recv()
    except EOFError:
        proc.join()
        msg = f"benchmark child died, exit code {proc.exitcode}"
        raise RuntimeError(msg) from None
    proc.join()
    if not ok:
        raise RuntimeError(value)
    return value, grew


def standalone(doc: str, measure: Callable[..., Table], *options) -> int:
    """One benchmark as a command: ``--repeat`` and its own ``(name,
    default, help)`` options, passed to ``measure`` by name."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure")
    for name, default, text in options:
        ap.add_argument(f"--{name}", type=type(default), default=default, help=text)
    print(measure(**vars(ap.parse_args())).text())
    return 0


def interleaved(fn: Callable[..., Any], cases, repeat: int) -> dict:
    """``in_child(fn, *case)`` ``repeat`` times per case, round-robin over
    the cases, so a busy spell of the machine spoils one run of several
    cases rather than every run of one. {case: [(value, memory), ...]}."""
    cases = list(dict.fromkeys(cases))
    runs: dict = {case: [] for case in cases}
    for _ in range(repeat):
        for case in cases:
            runs[case].append(in_child(fn, *case))
    return runs


def median(values) -> float:
    return statistics.median(values)


def mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / MIB:.1f}"


# -- the machine ----------------------------------------------------------------
def machine() -> str:
    """One line: CPU model, cores, memory, Python and library versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    total = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if total:
        mem = f", {total / (1 << 30):.0f} GiB RAM"
    import numba
    import numpy

    return (
        f"{model}, {os.cpu_count()} CPUs{mem}; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, SimPy "
        f"{simpy.__version__}, numpy {numpy.__version__}, numba {numba.__version__}"
    )


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# -- results ----------------------------------------------------------------------
class Table:
    """One benchmark's figures: printed as text, written as markdown."""

    def __init__(self, title: str, headers: list[str], note: str = "") -> None:
        self.title = title
        self.headers = headers
        self.note = note
        self.rows: list[list[str]] = []
        self.verdicts: list[str] = []
        # the figures `run.py --json` writes, under stable keys
        self.figures: dict[str, float | None] = {}

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def verdict(self, name: str, ok: bool, detail: str) -> bool:
        self.verdicts.append(f"{name}: {'met' if ok else 'NOT met'} ({detail})")
        return ok

    def text(self) -> str:
        widths = [
            max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.headers)
        ]

        def line(cells):
            first = cells[0].ljust(widths[0])
            rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
            return "  ".join([first, *rest])

        out = [self.title]
        if self.note:
            out.append(self.note)
        out += [line(self.headers), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        out += [f"  target {v}" for v in self.verdicts]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join(" --- " for _ in self.headers) + "|")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.verdicts:
            out.append("")
            out += [f"- target {v}" for v in self.verdicts]
        return "\n".join(out) + "\n"


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


def timed_command(cmd: list[str]) -> tuple[float, float, int]:
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
