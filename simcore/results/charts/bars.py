"""Bar charts of metrics.json: one value per strategy and metric.

TLB misses, CPU overhead, lock wait and executable memory. With
replications a bar carries its 95% interval as an error bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from simcore.metrics.catalog import label_of
from simcore.results.charts.style import (
    GREYS,
    HATCHES,
    _save,
    axis_scale,
    subplots,
    tight_layout,
)


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
    fig, ax = subplots(figsize=(7, 3.6))
    _bars(
        ax,
        doc,
        [label_of(m) for m in levels],
        strategies,
        lambda j, i: (strategies[i], levels[j]),
        div,
    )
    ax.set_xlabel("TLB level")
    ax.set_ylabel("TLB misses" + ("" if unit == "count" else f" ({unit})"))
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(strategies))
    tight_layout(fig)
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
    fig, ax = subplots(figsize=(7, 3.6))
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
    ax.set_ylabel(f"{label_of('cpu.overhead_pct')} (% of all CPU time)")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(kinds))
    tight_layout(fig)
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
    fig, ax = subplots(figsize=(7, 3.6))
    _bars(ax, doc, locks, strategies, lambda j, i: (strategies[i], metrics[j]), div)
    ax.set_xlabel("kernel lock")
    # the catalog's label names one lock; this axis holds them all
    ax.set_ylabel(f"lock wait time, all CPUs ({unit})")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(strategies))
    tight_layout(fig)
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
    fig, ax = subplots(figsize=(7, 3.6))
    labels = [label_of(k) for k in kinds]
    _bars(ax, doc, strategies, labels, lambda j, i: (strategies[j], kinds[i]), div)
    ax.set_xlabel("strategy")
    ax.set_ylabel(f"executable memory ({unit})")
    ax.set_title(title + _ci_note(doc))
    _top_legend(ax, len(kinds))
    tight_layout(fig)
    return _save(fig, out, "mem_exec")
