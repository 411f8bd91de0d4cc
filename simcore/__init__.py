"""simcore: a discrete-event simulator of Linux vmalloc, executable memory
and BPF arena allocators on modelled hardware.

Public API (from :mod:`simcore.api`, imported on first use so that
``import simcore`` stays cheap)::

    from simcore import load_workload, simulate, write_results
    resolved = load_workload("workloads/quickstart.yaml", sets=["machine.cpus=8"])
    results = simulate(resolved)
    folder = write_results(resolved, results)

Errors are documented in :mod:`simcore.errors`. The package is built in
layers, each importing only those below it (the contracts are in
``pyproject.toml``)::

    cli                      commands, exit codes, error rendering
    sweep | validate         runs of many simulations
    api                      load, simulate, replicate, write
    engine | results         one simulation wired and run | its folder
    config                   the workload file, resolved
    workloads                generators of what a host does
    strategies               executable-memory and arena policies
    kernel                   the modelled kernel (mm/, kernel/bpf/, arch/)
    hw                       the machine: TLBs, walks, flushes, locks
    ground                   context, metrics, units, constants, layout,
                             profiles, registry, hooks, errors
"""

from simcore._version import __version__
from simcore.errors import (
    CaptureError,
    ConfigError,
    InputError,
    SimcoreError,
    SimulationError,
)

_API = ("load_workload", "simulate", "write_results", "run_replications")


def __getattr__(name: str):
    if name in _API:
        import simcore.api

        return getattr(simcore.api, name)
    raise AttributeError(f"module 'simcore' has no attribute {name!r}")


__all__ = [
    "CaptureError",
    "ConfigError",
    "InputError",
    "SimcoreError",
    "SimulationError",
    "__version__",
    "load_workload",
    "run_replications",
    "simulate",
    "write_results",
]
