"""``simcore sweep SWEEP.yaml``: run a parameter sweep, resumably.

Exit codes: 0 when every point of this run (or shard) succeeded, 1 when a
point failed (each is listed on stderr and recorded in its point file; a
rerun retries it), 2 for bad input, found before any point runs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from simcore.errors import ConfigError

EXIT_OK, EXIT_FAILED_POINTS = 0, 1
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="parameter sweep over a workload; resumable",
        description="Run every point of a sweep file. Points already stored in "
        "the output folder are skipped, so rerunning resumes an interrupted "
        "sweep and retries failed points.",
    )
    p.add_argument("sweep", metavar="SWEEP.yaml")
    p.add_argument(
        "--executor",
        choices=["local", "dask"],
        help="local process pool (default), or Dask distributed",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="Dask scheduler address (implies --executor dask); without it "
        "--executor dask uses the sweep file's cluster: or a local Dask cluster",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes on this machine (default: the CPUs available)",
    )
    p.add_argument(
        "--shard",
        metavar="i/N",
        help="run only points whose index %% N == i-1, e.g. one Slurm array task",
    )
    p.add_argument(
        "-o", "--output", metavar="DIR", help="output folder (default results/NAME)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress, no summary")
    return p


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = _SHARD.match(text)
    if m:
        i, n = int(m.group(1)), int(m.group(2))
        if 1 <= i <= n:
            return i, n
    raise ConfigError(
        f"bad shard {text!r}",
        file="--shard",
        expected="i/N with 1 <= i <= N, e.g. --shard 3/8",
    )


def run(args: argparse.Namespace) -> int:
    from simcore.sweep.aggregate import aggregate
    from simcore.sweep.executors import make_executor
    from simcore.sweep.points import expand, task_of
    from simcore.sweep.progress import Progress
    from simcore.sweep.spec import load_sweep
    from simcore.sweep.store import PointStore

    shard = parse_shard(args.shard)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(
            f"{args.workers} workers", file="--workers", expected="at least 1"
        )
    kind = args.executor or ("dask" if args.scheduler else "local")
    if args.scheduler and kind != "dask":
        raise ConfigError(
            "--scheduler is a Dask scheduler address",
            file="--scheduler",
            expected="--executor dask (or no --executor)",
        )
    quiet = args.quiet

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    sweep = load_sweep(args.sweep)
    points = expand(sweep)
    out = Path(args.output) if args.output else Path("results") / sweep.name
    store = PointStore(out)
    mine = [p for p in points if shard is None or p.index % shard[1] == shard[0] - 1]
    todo, seen, stored = [], set(), 0
    for p in mine:
        if p.config_hash in seen:
            continue  # two parameter sets that resolve to one config: run once
        seen.add(p.config_hash)
        if store.done(p.config_hash):
            stored += 1
        else:
            todo.append(p)
    part = f", shard {shard[0]}/{shard[1]}: {len(mine)}" if shard else ""
    try:
        if todo:
            store.clean_stale_tmp()
            with make_executor(
                kind, scheduler=args.scheduler, workers=args.workers, sweep=sweep
            ) as executor:
                say(
                    f"{sweep.name}: {len(points)} points{part}; {stored} stored, "
                    f"{len(todo)} to run on {executor.description}"
                )
                progress = Progress(len(todo), quiet=quiet)
                t0 = time.monotonic()
                try:
                    tasks = [task_of(p, sweep) for p in todo]
                    for i, outcome in executor.run(tasks):
                        store.write(todo[i], outcome)
                        progress.update(outcome["status"] == "ok")
                finally:
                    progress.close()
                say(
                    f"ran {len(todo)} points in {time.monotonic() - t0:.1f}s, "
                    f"{progress.failed} failed"
                )
        else:
            say(f"{sweep.name}: {len(points)} points{part}; all stored, none to run")
        agg = aggregate(sweep, points, store)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished points are stored in {out}; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    for name in agg.unmatched:
        say(f"warning: metric {name!r} was not produced by any point")
    if not quiet:
        sys.stdout.write(agg.summary)
        print(f"results: {out}")
    mine_idx = {p.index for p in mine}
    failed = [(p, err) for p, err in agg.failed if p.index in mine_idx]
    if failed:
        print(f"{len(failed)} point(s) failed:", file=sys.stderr)
        for p, err in failed:
            print(f"  {p.label()}: {err['type']}: {err['message']}", file=sys.stderr)
        print(
            f"errors are recorded in {store.folder}/<hash>.json; rerun to retry them",
            file=sys.stderr,
        )
    if quiet:
        print(f"results: {out}", file=sys.stderr)
    return EXIT_FAILED_POINTS if failed else EXIT_OK
