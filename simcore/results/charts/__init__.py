"""Charts for a results folder, PNG and SVG, readable in grey-scale.

Strategies are told apart by hatching, line style and marker as well as
by shade, so a chart survives a black-and-white printout or a colour-blind
reader. Each title asks the question the chart answers. Everything is drawn
from the files of the results folder (``simcore report`` redraws them), and
a chart whose metrics the run did not produce is skipped rather than drawn
empty. With replications, bars carry their 95% interval as an error bar.

SVG output is byte-stable: a fixed ``svg.hashsalt`` for element ids and no
date in the metadata.

This module lists the charts of a results folder and draws them all; the
drawing lives in :mod:`.bars` (metrics.json), :mod:`.curves` (latency.csv,
timeseries.csv) and :mod:`.sweep` (a metric against a swept parameter),
in the shared look of :mod:`.style`.
"""

from __future__ import annotations

from pathlib import Path

from simcore.results.charts.bars import (
    cpu_overhead_chart,
    lock_wait_chart,
    mem_exec_chart,
    tlb_misses_chart,
)
from simcore.results.charts.curves import (
    directmap_chart,
    latency_cdf_chart,
    shootdowns_chart,
)
from simcore.results.charts.labels import metric_axis, param_label
from simcore.results.charts.style import (
    GREYS,
    HATCHES,
    MARKERS,
    STYLES,
    _save,  # simcore.validate.charts saves through it
    axis_scale,
)
from simcore.results.charts.sweep import metric_vs_parameter_chart

__all__ = [
    "CHARTS",
    "GREYS",
    "HATCHES",
    "MARKERS",
    "STYLES",
    "_save",
    "axis_scale",
    "cpu_overhead_chart",
    "directmap_chart",
    "latency_cdf_chart",
    "lock_wait_chart",
    "mem_exec_chart",
    "metric_axis",
    "metric_vs_parameter_chart",
    "param_label",
    "plt",
    "render_charts",
    "shootdowns_chart",
    "tlb_misses_chart",
]


def __getattr__(name: str):
    # pyplot only for the callers that draw with it (the sweep and
    # validation charts): the results folder's charts do without
    if name == "plt":
        from simcore.results.charts import style

        return style.plt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CHARTS = {
    "tlb_misses": "TLB misses by level, per strategy",
    "cpu_overhead": "CPU time lost, split into page walks, shootdowns, locks",
    "directmap": "direct-map composition (4K/2M/1G) over simulated time",
    "shootdowns": "shootdowns and flush IPIs over simulated time",
    "lock_wait": "total wait per kernel lock",
    "latency_cdf": "allocation latency CDF per operation",
    "mem_exec": "executable memory requested vs allocated",
}


def render_charts(
    doc: dict,
    out: Path,
    name: str,
    *,
    cdfs: dict | None = None,
    series: dict | None = None,
) -> list[Path]:
    """Every chart the folder's data supports; ``cdfs`` and ``series`` as
    read by :func:`writer.read_latency_csv` and ``read_timeseries_csv``."""
    cdfs = cdfs or {}
    series = series or {}
    paths = tlb_misses_chart(doc, out, f"{name}: how many TLB misses per strategy?")
    paths += cpu_overhead_chart(
        doc, out, f"{name}: how much CPU time is lost, and to what?"
    )
    paths += directmap_chart(
        series, out, f"{name}: how much of the direct map gets split?"
    )
    paths += shootdowns_chart(
        series, out, f"{name}: how many TLB shootdowns and IPIs, and when?"
    )
    paths += lock_wait_chart(doc, out, f"{name}: where do CPUs wait for kernel locks?")
    paths += latency_cdf_chart(cdfs, out, f"{name}: how long do allocations take?")
    paths += mem_exec_chart(
        doc, out, f"{name}: how much executable memory is set aside?"
    )
    return paths
