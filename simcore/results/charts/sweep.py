"""A metric against a swept parameter, one line per strategy.

Drawn from plain rows (one per sweep point and strategy) rather than a
results folder; several seeds of one point become a mean with a
Student-t 95% band.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from simcore.metrics.catalog import label_of, lookup
from simcore.results.charts.labels import metric_axis, param_label
from simcore.results.charts.style import (
    GREYS,
    MARKERS,
    STYLES,
    _save,
    axis_scale,
    subplots,
    tight_layout,
)
from simcore.results.stats import ci95


def _legend(ax, n: int) -> None:
    if n > 1:
        ax.legend(frameon=False, fontsize=7)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _point(v) -> tuple[float, float | None, float | None] | None:
    if isinstance(v, Mapping):
        if v.get("mean") is None:
            return None
        return float(v["mean"]), v.get("ci95_low"), v.get("ci95_high")
    if v is None:
        return None
    return float(v), None, None


def metric_vs_parameter_chart(
    rows: Iterable[Mapping],
    metric: str,
    x: str,
    out_dir: Path,
    title: str | None = None,
) -> list[Path]:
    """One line per strategy of ``metric`` against sweep parameter ``x``.

    ``rows`` holds one mapping per (sweep point, strategy)::

        {"strategy": "bpf_prog_pack", "machine.cpus": 64, "tlb.ipis": 1520}

    - ``"strategy"``: the line the row belongs to;
    - ``x`` (here ``"machine.cpus"``): the parameter value, a number (the
      axis is numeric) or anything else (categories, in first-seen order);
    - ``metric``: a number, or an interval mapping as in metrics.json
      ``replications`` (``{"mean", "ci95_low", "ci95_high", ...}``).
      Several plain numbers for the same strategy and ``x`` (one per seed)
      are averaged and get a Student-t 95% band. Rows without the metric
      are ignored.

    The axes say what the catalog and :mod:`.labels` call ``metric`` and
    ``x``, never the dotted names; ``title`` defaults to the two labels.

    Writes ``<metric>_vs_<x>.png`` and ``.svg`` into ``out_dir`` and returns
    their paths; nothing (an empty list) when no row has the metric.
    """
    samples: dict[str, dict] = {}
    order: list = []
    for row in rows:
        p = _point(row.get(metric))
        if p is None or x not in row:
            continue
        xv = row[x]
        key = repr(xv)
        if key not in [repr(o) for o in order]:
            order.append(xv)
        samples.setdefault(row["strategy"], {}).setdefault(key, []).append(p)
    if not samples:
        return []
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in order)
    pos = {repr(v): (v if numeric else i) for i, v in enumerate(order)}
    info = lookup(metric)
    unit = info.unit if info else "count"
    lines: dict[str, list[tuple[float, float, float, float]]] = {}
    for s, per in samples.items():
        pts = []
        for key, ps in per.items():
            if len(ps) == 1:
                mean, lo, hi = ps[0]
            else:
                iv = ci95([p[0] for p in ps])
                mean, lo, hi = iv.mean, iv.low, iv.high
            pts.append(
                (pos[key], mean, mean if lo is None else lo, mean if hi is None else hi)
            )
        lines[s] = sorted(pts)
    peak = max(abs(p[1]) for pts in lines.values() for p in pts)
    div, uname = axis_scale(unit, peak)
    fig, ax = subplots(figsize=(7, 3.8))
    banded = False
    for k, (s, pts) in enumerate(lines.items()):
        xs = [p[0] for p in pts]
        grey = GREYS[k % len(GREYS)]
        if any(p[2] != p[3] for p in pts):
            banded = True
            ax.fill_between(
                xs,
                [p[2] / div for p in pts],
                [p[3] / div for p in pts],
                color=grey,
                alpha=0.2,
                linewidth=0,
            )
        ax.plot(
            xs,
            [p[1] / div for p in pts],
            label=s,
            color=grey,
            linestyle=STYLES[k % len(STYLES)],
            marker=MARKERS[k % len(MARKERS)],
            markersize=4,
            linewidth=1.3,
        )
    if not numeric:
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([str(v) for v in order])
    ax.set_xlabel(param_label(x))
    ax.set_ylabel(metric_axis(metric, uname))
    title = title or f"{label_of(metric)} vs {param_label(x)}"
    ax.set_title(title + (" (band: 95% CI)" if banded else ""))
    ax.grid(True, color="0.9", linewidth=0.5)
    _legend(ax, len(lines))
    tight_layout(fig)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir, f"{_slug(metric)}_vs_{_slug(x)}")
