"""simcore: a discrete-event simulator of Linux vmalloc, executable memory
and BPF arena allocators on modelled hardware.

Public API::

    from simcore import load_workload, simulate, write_results
    resolved = load_workload("workloads/quickstart.yaml", sets=["machine.cpus=8"])
    results = simulate(resolved)
    folder = write_results(resolved, results)

Errors are documented in :mod:`simcore.errors`.
"""

__version__ = "0.1.0"

from simcore.errors import (  # noqa: E402
    CaptureError,
    ConfigError,
    InputError,
    SimcoreError,
    SimulationError,
)


def load_workload(*args, **kwargs):
    from simcore.config.load import load_workload as _load

    return _load(*args, **kwargs)


def simulate(*args, **kwargs):
    from simcore.engine import simulate as _simulate

    return _simulate(*args, **kwargs)


def write_results(*args, **kwargs):
    from simcore.results.writer import write_results as _write

    return _write(*args, **kwargs)


__all__ = [
    "CaptureError",
    "ConfigError",
    "InputError",
    "SimcoreError",
    "SimulationError",
    "__version__",
    "load_workload",
    "simulate",
    "write_results",
]
