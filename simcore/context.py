"""The typed context of one simulation: what every layer may know.

Hardware, kernel, strategy and workload code receive a :class:`SimContext`
(directly, or through the kernel object that holds it) and never the
engine's ``Simulation``: the clock, named random streams, the metrics
registry, the machine profile, the typed kernel knobs, the address layout,
the tracepoint hooks and the kernel log.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simpy

from simcore.hooks import Hooks
from simcore.knobs import KernelKnobs
from simcore.layout import AddressLayout
from simcore.metrics import Metrics
from simcore.profile import HwProfile


def find_capture(name: str, near: Path) -> Path:
    """A capture named in a workload file: a relative path is looked up
    next to the workload file (``near``) first, then from the current
    directory. The one rule for every capture kind."""
    path = Path(name)
    if not path.is_absolute() and (near / path).is_file():
        return near / path
    return path


def component_rng(seed: int, name: str) -> np.random.Generator:
    """An independent stream per named component.

    Keyed by the component's name rather than by spawn order, so adding a
    component or running on another executor never shifts another's stream.
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(name.encode()),))
    return np.random.Generator(np.random.PCG64(ss))


@dataclass(eq=False)
class SimContext:
    env: simpy.Environment
    seed: int
    duration: int  # ns of simulated time
    nr_cpus: int  # online CPUs
    profile: HwProfile
    knobs: KernelKnobs
    layout: AddressLayout
    metrics: Metrics = field(default_factory=Metrics)
    hooks: Hooks = field(default_factory=Hooks)
    quantum: int = 100_000  # ns a CPU runs code between TLB flush points
    tlb_model: str = "fast"
    lock_model: str = "exact"
    file: str = ""  # the workload file: errors name it, captures resolve near it
    kmsg: list[str] = field(default_factory=list)  # the kernel log (dmesg)
    config_hash: str = ""  # the run's identity, as the results footer names it

    def rng(self, name: str) -> np.random.Generator:
        return component_rng(self.seed, name)

    def capture(self, name: str) -> Path:
        """Where a capture named in the workload file is (:func:`find_capture`)."""
        return find_capture(name, Path(self.file).parent)
