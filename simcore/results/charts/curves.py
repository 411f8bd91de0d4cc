"""Charts of the curves a run records, one line or panel per strategy.

Allocation latency CDFs (latency.csv), and the direct map and TLB
shootdowns over simulated time (timeseries.csv).
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from simcore.metrics.catalog import label_of
from simcore.results.charts.labels import metric_axis
from simcore.results.charts.style import (
    GREYS,
    MARKERS,
    STYLES,
    _save,
    axis_scale,
    subplots,
    tight_layout,
)


def latency_cdf_chart(
    cdfs: dict[str, dict[str, list]], out: Path, title: str
) -> list[Path]:
    """``cdfs``: strategy -> op -> [(latency ns, cumulative fraction)].

    One panel per operation, one line per strategy: the comparison a
    reader makes is between strategies for the same operation.
    """
    ops = sorted({op for per in cdfs.values() for op, pts in per.items() if pts})
    if not ops:
        return []
    ncol = min(3, len(ops))
    nrow = math.ceil(len(ops) / ncol)
    fig, axes = subplots(
        nrow,
        ncol,
        figsize=(3.4 * ncol + 0.6, 2.8 * nrow + 0.6),
        squeeze=False,
        sharey=True,
    )
    for ax, op in zip(axes.flat, ops, strict=False):
        for k, (s, per) in enumerate(cdfs.items()):
            pts = per.get(op)
            if not pts:
                continue
            ax.step(
                [p[0] / 1e3 for p in pts],
                [p[1] for p in pts],
                where="post",
                label=s,
                linestyle=STYLES[k % len(STYLES)],
                color=GREYS[k % len(GREYS)],
                linewidth=1.3,
            )
        ax.set_xscale("log")
        xs = [p[0] for per in cdfs.values() for p in per.get(op, []) if p[0] > 0]
        decades = math.log10(max(xs) / min(xs)) if xs else 0
        # plain numbers (10^-1 notation reads badly here), as many ticks as fit
        subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(op)
        ax.set_xlabel(f"{op} latency (us, log scale)")
        ax.set_ylim(0, 1.02)
        ax.grid(True, color="0.9", linewidth=0.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of operations")
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    if len(cdfs) > 1:
        axes.flat[0].legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    tight_layout(fig)
    return _save(fig, out, "latency_cdf")


def _time_panels(n: int, height: float = 3.0):
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    fig, axes = subplots(
        nrow, ncol, figsize=(3.4 * ncol + 0.8, height * nrow + 0.6), squeeze=False
    )
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


_DIRECTMAP = (
    ("directmap.4k_bytes", "4K"),
    ("directmap.2m_bytes", "2M"),
    ("directmap.1g_bytes", "1G"),
)


def directmap_chart(
    series: dict[str, dict[str, list]], out: Path, title: str
) -> list[Path]:
    """Share of the direct map per page size over time, a panel per strategy.

    4K at the bottom, then 2M, then 1G. On big machines 1G pages are most of
    the map and the splits the question is about would be a hairline, so
    when 4K and 2M stay small the axis stops above them and 1G fills the
    rest (said in the legend).
    """
    strategies = [
        s for s, per in series.items() if any(m in per for m, _ in _DIRECTMAP)
    ]
    if not strategies:
        return []
    shares: dict[str, tuple[list[float], list[list[float]]]] = {}
    small = 0.0
    for s in strategies:
        per = series[s]
        times = sorted({t for m, _ in _DIRECTMAP for t, _ in per.get(m, [])})
        at = [dict(per.get(m, [])) for m, _ in _DIRECTMAP]
        ys: list[list[float]] = [[] for _ in _DIRECTMAP]
        for t in times:
            vals = [a.get(t, 0.0) for a in at]
            total = sum(vals) or 1.0
            for i, v in enumerate(vals):
                ys[i].append(100.0 * v / total)
            small = max(small, ys[0][-1] + ys[1][-1])
        shares[s] = ([t / 1e6 for t in times], ys)
    zoom = small < 50
    top = min(100.0, max(small * 1.3, 1.0)) if zoom else 100.0
    fig, axes = _time_panels(len(strategies))
    labels = ["4K", "2M", "1G (fills to 100%)" if zoom else "1G"]
    for ax, s in zip(axes.flat, strategies, strict=False):
        xs, ys = shares[s]
        polys = ax.stackplot(
            xs, ys, labels=labels, colors=[GREYS[i] for i in (0, 1, 5)]
        )
        for i, p in enumerate(polys):
            p.set_hatch(("", "//", "..")[i])
            p.set_edgecolor("black")
            p.set_linewidth(0.4)
        ax.set_title(s)
        ax.set_xlabel("simulated time (ms)")
        ax.set_ylim(0, top)
        ax.set_xlim(xs[0] if xs else 0, xs[-1] if xs else 1)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of direct map (%)")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, frameon=False, fontsize=7, ncol=3, loc="lower center")
    fig.suptitle(title)
    tight_layout(fig, rect=(0, 0.06, 1, 1))
    return _save(fig, out, "directmap")


def shootdowns_chart(
    series: dict[str, dict[str, list]], out: Path, title: str
) -> list[Path]:
    """Cumulative shootdowns and IPIs over time, one line per strategy."""
    metrics = [
        (m, label_of(m))
        for m in ("tlb.shootdowns", "tlb.ipis")
        if any(m in per for per in series.values())
    ]
    if not metrics:
        return []
    fig, axes = _time_panels(len(metrics), 3.2)
    for ax, (m, label) in zip(axes.flat, metrics, strict=False):
        peak = max((v for per in series.values() for _, v in per.get(m, [])), default=0)
        div, unit = axis_scale("count", peak)
        for k, (s, per) in enumerate(series.items()):
            pts = per.get(m)
            if not pts:
                continue
            ax.plot(
                [t / 1e6 for t, _ in pts],
                [v / div for _, v in pts],
                label=s,
                linestyle=STYLES[k % len(STYLES)],
                marker=MARKERS[k % len(MARKERS)],
                markevery=max(1, len(pts) // 8),
                markersize=4,
                color=GREYS[k % len(GREYS)],
                linewidth=1.3,
            )
        ax.set_title(label)
        ax.set_xlabel("simulated time (ms)")
        ax.set_ylabel(f"{metric_axis(m, unit)}, cumulative")
        ax.set_ylim(bottom=0)
        ax.grid(True, color="0.9", linewidth=0.5)
    if len(series) > 1:
        axes.flat[0].legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    tight_layout(fig)
    return _save(fig, out, "shootdowns")
