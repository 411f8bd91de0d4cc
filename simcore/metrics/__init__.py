"""Metrics: what a simulation records and how the results name it.

Ground layer: ``hw/`` and ``kernel/`` record into :class:`Metrics`
(counters, latency histograms, CPU time by kind); ``results/`` reads the
finished :class:`RunResult` and describes each name from :mod:`.catalog`.
"""

from simcore.metrics.histogram import Histogram
from simcore.metrics.registry import OVERHEAD_KINDS, OWNERS, Metrics, clean
from simcore.metrics.run import RunResult

__all__ = ["OVERHEAD_KINDS", "OWNERS", "Histogram", "Metrics", "RunResult", "clean"]
