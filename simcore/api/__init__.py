"""The public run API: load, simulate, replicate, write.

This layer sits above the engine and the results writer and below the
commands (``cli``, ``sweep``, ``validate``), which use it to run
simulations::

    from simcore.api import load_workload, simulate, write_results
    resolved = load_workload("workloads/quickstart.yaml", sets=["machine.cpus=8"])
    folder = write_results(resolved, simulate(resolved))
"""

from simcore.api.replicate import run_replications
from simcore.config.load import Resolved, load_workload
from simcore.engine import simulate
from simcore.results.writer import write_results

__all__ = [
    "Resolved",
    "load_workload",
    "run_replications",
    "simulate",
    "write_results",
]
