"""Strategies for the sweep tests, loaded through a sweep file's ``plugins:``.

Worker processes import this by name, as they would a user's plugin, so the
tests go through the same path that makes custom strategies sweepable.
"""

from __future__ import annotations

import os

from simcore.errors import SimulationError
from simcore.strategies import register
from simcore.strategies.module_alloc import ModuleAlloc

RUN_LOG_ENV = "SIMCORE_TEST_RUN_LOG"


class ToyRaise(ModuleAlloc):
    """module_alloc, except that it cannot run on a 2-CPU machine."""

    name = "toy_raise"
    summary = "test strategy: fails on 2 CPUs"
    models = "nothing (tests)"

    def __init__(self, kernel) -> None:
        if kernel.nr_cpus == 2:
            raise SimulationError("toy_raise refuses to run on 2 CPUs")
        super().__init__(kernel)


class ToyCount(ModuleAlloc):
    """module_alloc that appends the config hash of every run to a log.

    One short O_APPEND write per run, so concurrent workers never interleave
    lines and the log counts exactly the points that were simulated.
    """

    name = "toy_count"
    summary = "test strategy: logs every run"
    models = "nothing (tests)"

    def __init__(self, kernel) -> None:
        log = os.environ.get(RUN_LOG_ENV)
        if log:
            line = (kernel.ctx.config_hash + "\n").encode()
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        super().__init__(kernel)


register("toy_raise", ToyRaise)
register("toy_count", ToyCount)
