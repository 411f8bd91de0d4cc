"""Charts for a results folder, PNG and SVG, readable in grey-scale.

Strategies are told apart by hatching, line style and marker as well as
by shade, so a chart survives a black-and-white printout or a colour-blind
reader. Each title asks the question the chart answers. Everything is drawn
from the files of the results folder (``simcore report`` redraws them), and
a chart whose metrics the run did not produce is skipped rather than drawn
empty. With replications, bars carry their 95% interval as an error bar.

SVG output is byte-stable: a fixed ``svg.hashsalt`` for element ids and no
date in the metadata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from simcore.metrics.catalog import lookup  # noqa: E402
from simcore.results.stats import ci95  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")
STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))
GREYS = ("0.15", "0.45", "0.65", "0.3", "0.55", "0.8")
MARKERS = ("o", "s", "^", "D", "v", "x")

plt.rcParams.update({"svg.hashsalt": "simcore", "font.size": 9})

CHARTS = {
    "tlb_misses": "TLB misses by level, per strategy",
    "cpu_overhead": "cpu.overhead_pct split into page walks, shootdowns, locks",
    "directmap": "direct-map composition (4K/2M/1G) over simulated time",
    "shootdowns": "shootdowns and flush IPIs over simulated time",
    "lock_wait": "total wait per kernel lock",
    "latency_cdf": "allocation latency CDF per operation",
    "mem_exec": "executable memory requested vs allocated",
}


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=110, metadata={"Date": None} if ext == "svg" else None)
        paths.append(p)
    plt.close(fig)
    return paths


def axis_scale(unit: str, peak: float) -> tuple[float, str]:
    """Divisor and unit name that keep an axis in readable numbers."""
    peak = abs(peak)
    if unit == "ns":
        for div, name in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
            if peak >= div:
                return div, name
        return 1.0, "ns"
    if unit == "bytes":
        for div, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if peak >= div:
                return float(div), name
        return 1.0, "bytes"
    if unit == "pct":
        return 1.0, "%"
    for div, name in ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands")):
        if peak >= div:
            return div, name
    return 1.0, unit if unit not in ("count", "") else "count"


def _strategies(doc: dict) -> list[str]:
    return list(doc["strategies"])


def _value(doc: dict, s: str, metric: str) -> float | None:
    return doc["strategies"][s].get(metric)


def _err(doc: dict, s: str, metric: str) -> tuple[float, float]:
    """Distances from the mean to the 95% bounds, (0, 0) without replications."""
    rep = doc.get("replications", {}).get(s, {}).get(metric)
    if not rep or rep.get("ci95_low") is None:
        return 0.0, 0.0
    return rep["mean"] - rep["ci95_low"], rep["ci95_high"] - rep["mean"]


def _has_ci(doc: dict) -> bool:
    return bool(doc.get("replications"))


def _ci_note(doc: dict) -> str:
    return " (error bars: 95% CI)" if _has_ci(doc) else ""


def _bars(
    ax,
    doc: dict,
    groups: list[str],
    bars: list[str],
    cell: Callable[[int, int], tuple[str, str]],
    div: float,
) -> None:
    """A cluster per group, a bar per entry of ``bars`` in each cluster.

    ``cell(group, bar)`` names the (strategy, metric) a bar shows.
    """
    ci = _has_ci(doc)
    width = 0.8 / max(1, len(bars))
    for i, label in enumerate(bars):
        xs, vals, lo, hi = [], [], [], []
        for j in range(len(groups)):
            s, metric = cell(j, i)
            v = _value(doc, s, metric)
            if v is None:
                continue
            e = _err(doc, s, metric)
            xs.append(j + i * width)
            vals.append(v / div)
            lo.append(e[0] / div)
            hi.append(e[1] / div)
        ax.bar(
            xs,
            vals,
            width,
            label=label,
            color=GREYS[i % len(GREYS)],
            hatch=HATCHES[i % len(HATCHES)],
            edgecolor="black",
            linewidth=0.6,
            yerr=[lo, hi] if ci else None,
            capsize=3 if ci else 0,
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(groups))])
    tilt = len(groups) > 3 or max(len(g) for g in groups) > 14
    ax.set_xticklabels(
        groups, rotation=15 if tilt else 0, ha="right" if tilt else "center"
    )


def _legend(ax, n: int) -> None:
    if n > 1:
        ax.legend(frameon=False, fontsize=7)


def _top_legend(ax, n: int) -> None:
    """Legend in a row above the bars, with headroom so it covers none."""
    if n < 2:
        return
    ncol = min(n, 3)
    rows = math.ceil(n / ncol)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + (hi - lo) * (0.08 + 0.1 * rows))
    ax.legend(frameon=False, fontsize=7, ncol=ncol, loc="upper center")


def tlb_misses_chart(doc: dict, out: Path, title: str) -> list[Path]:
    levels = [
        m
        for m in ("itlb.misses", "dtlb.misses", "stlb.misses")
        if any(m in doc["strategies"][s] for s in _strategies(doc))
    ]
    if not levels:
        return []
    peak = max(_value(doc, s, m) or 0 for s in _strategies(doc) for m in levels)
    div, unit = axis_scale("count", peak)
    strategies = _strategies(doc)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    _bars(
        ax,
        doc,
        [m.split(".")[0] for m in levels],
        strategies,
        lambda j, i: (strategies[i], levels[j]),
        div,
    )
    ax.set_xlabel("TLB level")
    ax.set_ylabel(f"misses ({unit})")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(strategies))
    fig.tight_layout()
    return _save(fig, out, "tlb_misses")


_KINDS = (
    ("pagewalk", "page walks"),
    ("shootdown", "shootdowns"),
    ("lock_spin", "lock spinning"),
)


def cpu_overhead_chart(doc: dict, out: Path, title: str) -> list[Path]:
    strategies = _strategies(doc)
    if not any("cpu.overhead_pct" in doc["strategies"][s] for s in strategies):
        return []
    kinds = [
        (k, label)
        for k, label in _KINDS
        if any(f"cpu.{k}_ns" in doc["strategies"][s] for s in strategies)
    ]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = list(range(len(strategies)))
    bottom = [0.0] * len(strategies)
    totals = [_value(doc, s, "cpu.overhead_pct") or 0.0 for s in strategies]
    parts = kinds or [("", "overhead")]
    for i, (k, label) in enumerate(parts):
        heights = []
        for j, s in enumerate(strategies):
            if not kinds:
                heights.append(totals[j])
                continue
            ns = [_value(doc, s, f"cpu.{kk}_ns") or 0 for kk, _ in kinds]
            share = (_value(doc, s, f"cpu.{k}_ns") or 0) / sum(ns) if sum(ns) else 0
            heights.append(totals[j] * share)
        ax.bar(
            xs,
            heights,
            0.5,
            bottom=bottom,
            label=label,
            color=GREYS[i % len(GREYS)],
            hatch=HATCHES[i % len(HATCHES)],
            edgecolor="black",
            linewidth=0.6,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    if _has_ci(doc):
        errs = [_err(doc, s, "cpu.overhead_pct") for s in strategies]
        ax.errorbar(
            xs,
            totals,
            yerr=[[e[0] for e in errs], [e[1] for e in errs]],
            fmt="none",
            ecolor="black",
            capsize=3,
            elinewidth=0.8,
        )
    ax.set_xticks(xs)
    tilt = len(xs) > 3 or max(len(s) for s in strategies) > 14
    ax.set_xticklabels(
        strategies, rotation=15 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_xlim(-0.75, len(xs) - 0.25)
    ax.set_xlabel("strategy")
    ax.set_ylabel("CPU time lost (% of all CPUs)")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(kinds))
    fig.tight_layout()
    return _save(fig, out, "cpu_overhead")


def lock_wait_chart(doc: dict, out: Path, title: str) -> list[Path]:
    strategies = _strategies(doc)
    locks = sorted(
        {
            k[5:-8]
            for s in strategies
            for k in doc["strategies"][s]
            if k.startswith("lock.") and k.endswith(".wait_ns")
        }
    )
    # a lock no strategy ever took is a model detail, not a finding
    locks = [
        lk
        for lk in locks
        if any(_value(doc, s, f"lock.{lk}.acquisitions") != 0 for s in strategies)
    ]
    if not locks:
        return []
    metrics = [f"lock.{lk}.wait_ns" for lk in locks]
    peak = max(_value(doc, s, m) or 0 for s in strategies for m in metrics)
    div, unit = axis_scale("ns", peak)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    _bars(ax, doc, locks, strategies, lambda j, i: (strategies[i], metrics[j]), div)
    ax.set_xlabel("kernel lock")
    ax.set_ylabel(f"total wait, all CPUs ({unit})")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(strategies))
    fig.tight_layout()
    return _save(fig, out, "lock_wait")


def mem_exec_chart(doc: dict, out: Path, title: str) -> list[Path]:
    strategies = _strategies(doc)
    kinds = [
        m
        for m in ("mem.exec.requested_bytes", "mem.exec.allocated_bytes")
        if any(m in doc["strategies"][s] for s in strategies)
    ]
    if not kinds:
        return []
    peak = max(_value(doc, s, m) or 0 for s in strategies for m in kinds)
    div, unit = axis_scale("bytes", peak)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [k.split(".")[2].replace("_bytes", "") for k in kinds]
    _bars(ax, doc, strategies, labels, lambda j, i: (strategies[j], kinds[i]), div)
    ax.set_xlabel("strategy")
    ax.set_ylabel(f"executable memory ({unit})")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(kinds))
    fig.tight_layout()
    return _save(fig, out, "mem_exec")


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
    fig, axes = plt.subplots(
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
        ax.set_xlabel("latency (us, log scale)")
        ax.set_ylim(0, 1.02)
        ax.grid(True, color="0.9", linewidth=0.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of operations")
    for ax in list(axes.flat)[len(ops) :]:
        ax.set_visible(False)
    if len(cdfs) > 1:
        axes.flat[0].legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out, "latency_cdf")


def _time_panels(n: int, height: float = 3.0):
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(
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
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, out, "directmap")


def shootdowns_chart(
    series: dict[str, dict[str, list]], out: Path, title: str
) -> list[Path]:
    """Cumulative shootdowns and IPIs over time, one line per strategy."""
    metrics = [
        (m, label)
        for m, label in (("tlb.shootdowns", "shootdowns"), ("tlb.ipis", "flush IPIs"))
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
        ax.set_ylabel(f"{label}, cumulative ({unit})")
        ax.set_ylim(bottom=0)
        ax.grid(True, color="0.9", linewidth=0.5)
    if len(series) > 1:
        axes.flat[0].legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out, "shootdowns")


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
    title: str,
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
    fig, ax = plt.subplots(figsize=(7, 3.8))
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
    ax.set_xlabel(x)
    ax.set_ylabel(f"{metric} ({uname})")
    ax.set_title(title + (" (band: 95% CI)" if banded else ""))
    ax.grid(True, color="0.9", linewidth=0.5)
    _legend(ax, len(lines))
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _save(fig, out_dir, f"{_slug(metric)}_vs_{_slug(x)}")


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
