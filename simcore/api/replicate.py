"""``simcore run --replications N``: run the same comparison under N seeds.

Replication ``i`` reloads the workload with seed
``replication_seeds(seed, N)[i]`` and runs every strategy, so within a
replication the strategies still share their random streams. What the
results folder makes of the runs is :class:`~simcore.results.replicate.Replicated`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simcore.config.load import Resolved, load_workload
from simcore.engine import simulate
from simcore.results.replicate import Replicated
from simcore.results.stats import replication_seeds


def run_replications(
    workload: str | Path,
    n: int,
    *,
    sets: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    strategies: list[str] | None = None,
    quiet: bool = True,
) -> tuple[Resolved, Replicated]:
    """Run the workload ``n`` times; return its resolved config and the runs.

    The returned config is the one with the workload's own seed, so the
    results folder's ``config.yaml`` and ``config_hash`` name the run the
    replications were derived from.
    """
    base = load_workload(workload, sets=sets, seed=seed, strategies=strategies)
    seeds = replication_seeds(base.cfg.seed, n)
    show = not quiet and sys.stderr.isatty()
    runs = []
    for i, s in enumerate(seeds):
        if show:
            sys.stderr.write(f"replication {i + 1}/{n} (seed {s})\n")
        resolved = load_workload(workload, sets=sets, seed=s, strategies=strategies)
        runs.append(simulate(resolved, quiet=quiet))
    return base, Replicated(seeds, runs)
