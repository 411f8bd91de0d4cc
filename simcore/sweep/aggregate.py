"""Tables, intervals and charts of a sweep, from its point files alone.

Rerunning a finished sweep skips every point and only redoes this, so
changing ``metrics:`` or ``x:`` and rerunning is cheap. Rows follow the
point order of the sweep file, never the order points finished in, so the
output is the same whichever executor ran the points.

- ``sweep.csv``: one row per point (combination and replication) and
  strategy; every metric any point produced is a column. ``sweep.parquet``
  holds the same table when pyarrow is installed.
- ``summary.csv``: per combination, strategy and chosen metric: n, mean,
  standard deviation and the 95% Student-t confidence interval of the mean
  over the replications.
- ``summary.txt``: the chosen metrics in at most 80 columns, for a mail.
- ``<metric>.png`` / ``.svg``: the metric against ``x``, one line per
  strategy (and per value of the other swept parameters), with its
  confidence band.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simcore._version import __version__
from simcore.results import stats
from simcore.results.stats import Interval
from simcore.sweep.points import Point
from simcore.sweep.spec import Sweep, short_names
from simcore.sweep.store import PointStore, write_text_atomic

WIDTH = 80
MARKERS = ("o", "s", "^", "D", "v", "x", "+")


def ci95(values: Iterable[float]) -> Interval:
    """:func:`simcore.results.stats.ci95` of ``values``, NaN where it has None.

    summary.csv, summary.txt and the charts take NaN for the standard
    deviation and bounds one value cannot give (empty cells, no band).
    """
    iv = stats.ci95(list(values))
    if iv.low is None:
        nan = float("nan")
        return replace(iv, sd=nan, low=nan, high=nan)
    return iv


@dataclass
class Aggregate:
    total: int = 0  # points in the sweep
    ok: int = 0
    failed: list[tuple[Point, dict]] = field(default_factory=list)
    missing: int = 0
    metrics: list[str] = field(default_factory=list)  # chosen, expanded
    unmatched: list[str] = field(default_factory=list)  # chosen, never produced
    files: list[Path] = field(default_factory=list)
    summary: str = ""


def aggregate(sweep: Sweep, points: list[Point], store: PointStore) -> Aggregate:
    out = store.out
    out.mkdir(parents=True, exist_ok=True)
    docs: dict[str, dict | None] = {}
    for p in points:
        if p.config_hash not in docs:
            docs[p.config_hash] = store.load(p.config_hash)
    agg = Aggregate(total=len(points))
    for p in points:
        doc = docs[p.config_hash]
        if doc is None:
            agg.missing += 1
        elif doc["status"] == "ok":
            agg.ok += 1
        else:
            agg.failed.append((p, doc["error"]))
    produced = sorted(
        {
            m
            for d in docs.values()
            if d is not None and d["status"] == "ok"
            for ms in d["strategies"].values()
            for m in ms
        }
    )
    agg.metrics, agg.unmatched = _expand_metrics(sweep.metrics, produced)

    header, rows = sweep_rows(sweep, points, docs, produced)
    _write(out / "sweep.csv", _csv(header, rows), agg)
    if _write_parquet(out / "sweep.parquet", header, rows):
        agg.files.append(out / "sweep.parquet")

    summary = summarise(sweep, points, docs, agg.metrics)
    keys = [p.key for p in sweep.params]
    sheader = [
        *param_columns(sweep),
        "strategy",
        "metric",
        "n",
        "mean",
        "sd",
        "ci95_low",
        "ci95_high",
    ]
    srows = [
        [
            *(combo[k] for k in keys),
            strategy,
            metric,
            iv.n,
            _num(iv.mean),
            _num(iv.sd),
            _num(iv.low),
            _num(iv.high),
        ]
        for (combo, strategy, metric), iv in summary
    ]
    _write(out / "summary.csv", _csv(sheader, srows), agg)
    agg.summary = render_text(sweep, points, summary, agg)
    _write(out / "summary.txt", agg.summary, agg)
    agg.files += render_charts(sweep, summary, agg.metrics, out)
    return agg


def _expand_metrics(chosen: list[str], produced: list[str]) -> tuple[list, list]:
    out: list[str] = []
    unmatched: list[str] = []
    for name in chosen:
        hits = [m for m in produced if fnmatch.fnmatchcase(m, name)]
        if not hits:
            unmatched.append(name)
        out.extend(h for h in hits if h not in out)
    return out, unmatched


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v


def _strategies_of(p: Point, doc: dict | None) -> list[str]:
    if doc is not None and doc["status"] == "ok":
        return list(doc["strategies"])
    # the recorded config names a strategy plainly or as {name, label, params}
    return [
        e if isinstance(e, str) else str(e.get("label") or e["name"])
        for e in p.config.get("strategy", [])
    ]


_FIXED = {"point", "combination", "replication", "seed", "config_hash", "strategy"}


def param_columns(sweep: Sweep) -> list[str]:
    """Column names of the swept parameters; ``param.strategy`` when the
    strategy itself is swept, beside the strategy each row ran."""
    return [f"param.{p.key}" if p.key in _FIXED else p.key for p in sweep.params]


def sweep_rows(
    sweep: Sweep, points: list[Point], docs: dict, metrics: list[str]
) -> tuple[list[str], list[list[Any]]]:
    keys = [p.key for p in sweep.params]
    header = [
        "point",
        "combination",
        "replication",
        "seed",
        "config_hash",
        *param_columns(sweep),
        "strategy",
        "status",
        *metrics,
        "error",
    ]
    rows: list[list[Any]] = []
    for p in points:
        doc = docs[p.config_hash]
        if doc is None:
            continue
        head = [
            p.index,
            p.combo,
            p.replication,
            p.seed,
            p.config_hash,
            *(p.params[k] for k in keys),
        ]
        for s in _strategies_of(p, doc):
            if doc["status"] == "ok":
                ms = doc["strategies"][s]
                vals = [ms.get(m) for m in metrics]
                rows.append([*head, s, "ok", *vals, None])
            else:
                err = f"{doc['error']['type']}: {doc['error']['message']}"
                rows.append([*head, s, "failed", *([None] * len(metrics)), err])
    return header, rows


def summarise(
    sweep: Sweep, points: list[Point], docs: dict, metrics: list[str]
) -> list[tuple[tuple[dict, str, str], Interval]]:
    """((combination, strategy, metric), interval) in point order."""
    samples: dict[tuple[int, str, str], list[float]] = {}
    combos: dict[int, dict] = {}
    order: list[tuple[int, str]] = []
    for p in points:
        combos.setdefault(p.combo, p.params)
        doc = docs[p.config_hash]
        for s in _strategies_of(p, doc):
            if (p.combo, s) not in order:
                order.append((p.combo, s))
            if doc is None or doc["status"] != "ok":
                continue
            ms = doc["strategies"][s]
            for m in metrics:
                if m in ms and ms[m] is not None:
                    samples.setdefault((p.combo, s, m), []).append(ms[m])
    out = []
    for combo, s in order:
        for m in metrics:
            vals = samples.get((combo, s, m))
            if vals:
                out.append(((combos[combo], s, m), ci95(vals)))
    return out


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([_csv_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def _write(path: Path, text: str, agg: Aggregate) -> None:
    write_text_atomic(path, text)
    agg.files.append(path)


def _write_parquet(path: Path, header: list[str], rows: list[list[Any]]) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    table = pa.table(
        {name: _arrow_column(pa, [r[j] for r in rows]) for j, name in enumerate(header)}
    )
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return True


def _arrow_column(pa, values: list[Any]):
    """Typed from the values themselves: a quoted "6.1" stays text."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if present and all(_is_num(v) for v in present):
        if any(isinstance(v, float) for v in present):
            return pa.array(
                [None if v is None else float(v) for v in values], type=pa.float64()
            )
        return pa.array(values, type=pa.int64())
    return pa.array([None if v is None else _csv_cell(v) for v in values], pa.string())


# ---------------------------------------------------------------- summary.txt


def _unit(metric: str) -> tuple[str, str]:
    from simcore.metrics.catalog import lookup

    info = lookup(metric)
    return (info.unit, info.better) if info else ("count", "none")


def _fmt_cell(iv: Interval, unit: str) -> str:
    from simcore.results.fmt import human

    if iv.n == 1 or math.isnan(iv.half):
        return human(iv.mean, unit)
    return f"{human(iv.mean, unit)} ±{human(iv.half, unit)}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "~"


def render_text(
    sweep: Sweep,
    points: list[Point],
    summary: list[tuple[tuple[dict, str, str], Interval]],
    agg: Aggregate,
) -> str:
    combos = len(points) // max(1, sweep.spec.seeds)
    seeds = sweep.spec.seeds
    lines = [
        f"{sweep.name}: {agg.total} points = {combos} combinations x {seeds} "
        f"seed{'s' if seeds > 1 else ''}",
        f"{agg.ok} ok, {len(agg.failed)} failed, {agg.missing} not run yet",
    ]
    if seeds > 1:
        lines.append("values: mean ±half-width of the 95% confidence interval (t)")
    labels = short_names(sweep.params)
    keys = [p.key for p in sweep.params]
    by_metric: dict[str, list] = {}
    for (combo, s, m), iv in summary:
        by_metric.setdefault(m, []).append((combo, s, iv))
    for metric in agg.metrics:
        entries = by_metric.get(metric, [])
        unit, better = _unit(metric)
        lines.append("")
        note = f" ({better} is better)" if better in ("lower", "higher") else ""
        lines.append(_fit(f"{metric}{note}", WIDTH))
        lines.extend(_table(entries, keys, labels, unit))
    for name in agg.unmatched:
        lines.append("")
        lines.append(_fit(f"{name}: no point produced this metric", WIDTH))
    if agg.failed:
        lines.append("")
        lines.append(f"failed points ({len(agg.failed)}):")
        for p, err in agg.failed[:20]:
            lines.append(_fit(f"  {p.label()}", WIDTH))
            first = (err.get("message") or "").splitlines()
            lines.append(_fit(f"    {err['type']}: {first[0] if first else ''}", WIDTH))
        if len(agg.failed) > 20:
            lines.append(f"  ... and {len(agg.failed) - 20} more (see sweep.csv)")
    base = sweep.spec.base if isinstance(sweep.spec.base, str) else "inline"
    lines.append("")
    lines.append(
        _fit(
            f"simcore {__version__}, sweep {Path(sweep.file).name}, base {base}, "
            f"root seed {sweep.spec.seed}",
            WIDTH,
        )
    )
    lines.append("every point: sweep.csv; intervals: summary.csv; configs: points/")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _table(entries: list, keys: list[str], labels: dict, unit: str) -> list[str]:
    if not entries:
        return ["  (no data)"]
    strategies: list[str] = []
    rows: dict[str, dict] = {}
    row_order: list[str] = []
    for combo, s, iv in entries:
        if s not in strategies:
            strategies.append(s)
        rk = json.dumps([combo[k] for k in keys], default=str)
        if rk not in rows:
            rows[rk] = {"combo": combo, "cells": {}}
            row_order.append(rk)
        rows[rk]["cells"][s] = _fmt_cell(iv, unit)
    # parameter columns, capped so a long path cannot push values off the line
    pcols = []
    for k in keys:
        vals = [_param_text(rows[r]["combo"][k]) for r in row_order]
        w = min(18, max(len(labels[k]), *(len(v) for v in vals)))
        numeric = all(_is_num(rows[r]["combo"][k]) for r in row_order)
        pcols.append((k, w, numeric))
    left = sum(w + 1 for _, w, _ in pcols) + 1
    cell_w = {
        s: min(
            24,
            max(len(s), *(len(rows[r]["cells"].get(s, "-")) for r in row_order)),
        )
        for s in strategies
    }
    # strategies that do not fit beside the parameters go to another block
    groups: list[list[str]] = [[]]
    used = left
    for s in strategies:
        need = cell_w[s] + 2
        if groups[-1] and used + need > WIDTH:
            groups.append([])
            used = left
        groups[-1].append(s)
        used += need
    out: list[str] = []
    for gi, group in enumerate(groups):
        if gi:
            out.append("")
        head = " " + " ".join(
            _fit(labels[k], w).rjust(w) if num else _fit(labels[k], w).ljust(w)
            for k, w, num in pcols
        )
        head += "".join("  " + _fit(s, cell_w[s]).rjust(cell_w[s]) for s in group)
        out.append(head)
        for r in row_order:
            combo = rows[r]["combo"]
            line = " " + " ".join(
                _fit(_param_text(combo[k]), w).rjust(w)
                if num
                else _fit(_param_text(combo[k]), w).ljust(w)
                for k, w, num in pcols
            )
            for s in group:
                cell = rows[r]["cells"].get(s, "-")
                line += "  " + _fit(cell, cell_w[s]).rjust(cell_w[s])
            out.append(_fit(line, WIDTH))
    return out


def _param_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --------------------------------------------------------------------- charts


_SCALES = {
    "ns": ((1e9, "s"), (1e6, "ms"), (1e3, "us"), (1, "ns")),
    "bytes": ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B")),
}


def _scale(unit: str, peak: float) -> tuple[float, str]:
    for div, name in _SCALES.get(unit, ()):
        if abs(peak) >= div:
            return div, name
    return 1.0, {"pct": "%", "count": "count"}.get(unit, unit)


def chart_stem(metric: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in metric)


def render_charts(
    sweep: Sweep,
    summary: list[tuple[tuple[dict, str, str], Interval]],
    metrics: list[str],
    out: Path,
) -> list[Path]:
    from simcore.metrics.catalog import label_of
    from simcore.results.charts import GREYS, STYLES, metric_axis, param_label, plt

    xp = next(p for p in sweep.params if p.key == sweep.x)
    # zipped partners of x change with it: they label points, not lines
    x_axis = next(a for a in sweep.axes if xp in a.params)
    others = [p.key for p in sweep.params if p not in x_axis.params]
    labels = short_names(sweep.params)
    numeric = all(_is_num(v) for v in xp.values)
    position = {json.dumps(v, default=str): i for i, v in enumerate(xp.values)}
    paths: list[Path] = []
    for metric in metrics:
        lines: dict[str, list[tuple[float, Interval]]] = {}
        for (combo, s, m), iv in summary:
            if m != metric:
                continue
            rest = ", ".join(f"{labels[k]}={_param_text(combo[k])}" for k in others)
            if xp.path == ("strategy",):
                name = rest or metric
            else:
                name = f"{s}, {rest}" if rest else s
            xv = combo[sweep.x]
            xpos = xv if numeric else position[json.dumps(xv, default=str)]
            lines.setdefault(name, []).append((xpos, iv))
        if not lines:
            continue
        unit, better = _unit(metric)
        peak = max(abs(iv.mean) for pts in lines.values() for _, iv in pts)
        div, uname = _scale(unit, peak)
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for k, (name, pts) in enumerate(lines.items()):
            pts.sort(key=lambda t: t[0])
            xs = [x for x, _ in pts]
            ys = [iv.mean / div for _, iv in pts]
            lo = [(iv.mean if math.isnan(iv.low) else iv.low) / div for _, iv in pts]
            hi = [(iv.mean if math.isnan(iv.high) else iv.high) / div for _, iv in pts]
            grey = GREYS[k % len(GREYS)]
            if len(xs) > 1:
                ax.fill_between(xs, lo, hi, color=grey, alpha=0.2, linewidth=0)
            else:  # a band one point wide does not show: draw the bar
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[
                        [y - low for y, low in zip(ys, lo, strict=True)],
                        [high - y for y, high in zip(ys, hi, strict=True)],
                    ],
                    color=grey,
                    capsize=3,
                    linewidth=0.8,
                    fmt="none",
                )
            ax.plot(
                xs,
                ys,
                label=name,
                color=grey,
                linestyle=STYLES[k % len(STYLES)],
                marker=MARKERS[k % len(MARKERS)],
                markersize=4,
                linewidth=1.3,
            )
        if numeric and all(isinstance(v, int) for v in xp.values):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not numeric:
            ax.set_xticks(range(len(xp.values)))
            ax.set_xticklabels([_param_text(v) for v in xp.values])
        # human names on the axes, as the results folder's charts have
        ax.set_xlabel(param_label(sweep.x))
        ax.set_ylabel(metric_axis(metric, uname))
        note = f", {better} is better" if better in ("lower", "higher") else ""
        seeds = sweep.spec.seeds
        band = f"95% CI over {seeds} seeds" if seeds > 1 else "one seed"
        what = f"{label_of(metric)} vs {param_label(sweep.x)}"
        ax.set_title(f"{sweep.name}: {what}\n{band}{note}")
        ax.grid(True, color="0.85", linewidth=0.5)
        ax.legend(frameon=False, fontsize=7)
        fig.tight_layout()
        stem = chart_stem(metric)
        for ext in ("png", "svg"):
            target = out / f"{stem}.{ext}"
            tmp = out / f".{stem}.{os.getpid()}.tmp.{ext}"
            fig.savefig(
                tmp,
                format=ext,
                dpi=110,
                metadata={"Date": None} if ext == "svg" else None,
            )
            os.replace(tmp, target)
            paths.append(target)
        plt.close(fig)
    return paths
