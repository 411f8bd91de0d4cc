"""One chart per case: published points against simulated ones.

With an x axis, each series is a line of simulated points with the
published points as unfilled markers of the same shade; without one, each
series is a pair of bars (published hatched, simulated solid). A narrow
panel beside them shows the criterion's quantity: the published value, the
band the criterion accepts around it (grey) and the simulated value. Styles
are those of :mod:`simcore.results.charts`, readable in grey-scale.
"""

from __future__ import annotations

from pathlib import Path

from simcore.results.charts import GREYS, MARKERS, STYLES, _save, plt
from simcore.validate.runner import CaseResult
from simcore.validate.table import num


def render_case_chart(result: CaseResult, out: Path) -> list[Path]:
    case = result.case
    spec = case.spec
    fig, (ax, qax) = plt.subplots(
        1, 2, figsize=(7.4, 4.0), gridspec_kw={"width_ratios": [4, 1]}
    )
    _band(qax, result)
    names = list(spec.series)
    if case.has_x:
        _lines(ax, result, names)
        ax.set_xlabel(spec.x.label)  # type: ignore[union-attr]
        if spec.x.log:  # type: ignore[union-attr]
            ax.set_xscale("log")
    else:
        _bars(ax, result, names)
    unit = f" ({spec.measure.unit})" if spec.measure.unit else ""
    ax.set_ylabel(spec.measure.label + unit)
    if spec.measure.log:
        ax.set_yscale("log")
    v = result.verdict
    verdict = (
        f"{case.rule.describe(case.has_x)}: published {num(v.published)}, "
        f"simulated {num(v.simulated)} -> {result.status}"
        if v
        else f"{result.status}: {result.error}"
    )
    ax.set_title(f"{spec.title}\n{verdict}", fontsize=8)
    ax.grid(True, linewidth=0.3, color="0.85")
    ax.legend(fontsize=7, frameon=False)
    fig.text(0.01, 0.01, f"source: {spec.source.ref}", fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, out, case.name)


def _band(ax, result: CaseResult) -> None:
    """The criterion: published quantity, accepted band, simulated quantity."""
    v = result.verdict
    ax.set_xticks([])
    ax.set_title(result.case.rule.quantity, fontsize=7)
    if v is None or v.published is None:
        return
    lo, hi = result.case.rule.bounds(v.published)
    ax.axhspan(lo, hi, color="0.88", label="accepted")
    ax.axhline(v.published, color="0.2", linestyle="--", linewidth=1, label="published")
    if v.simulated is not None:
        ax.plot([0], [v.simulated], marker="o", color="0.2", linestyle="none",
                label="simulated")  # fmt: skip
    pts = [lo, hi] + ([v.simulated] if v.simulated is not None else [])
    if min(pts) > 0 and max(pts) / min(pts) > 20:
        ax.set_yscale("log")
    ax.set_xlim(-1, 1)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, frameon=False, loc="best")


def _label(result: CaseResult, name: str) -> str:
    return result.case.spec.series[name].label or name


def _lines(ax, result: CaseResult, names: list[str]) -> None:
    for i, name in enumerate(names):
        shade, marker = GREYS[i % len(GREYS)], MARKERS[i % len(MARKERS)]
        sim = result.simulated.get(name, {})
        if sim:
            xs = sorted(sim)
            ax.plot(
                xs,
                [sim[x] for x in xs],
                linestyle=STYLES[i % len(STYLES)],
                marker=marker,
                color=shade,
                label=f"{_label(result, name)}: simulated",
            )
        pub = result.case.published.get(name, {})
        if pub:
            xs = sorted(pub)
            ax.plot(
                xs,
                [pub[x] for x in xs],
                linestyle="none",
                marker=marker,
                markerfacecolor="none",
                markersize=8,
                color=shade,
                label=f"{_label(result, name)}: published",
            )


def _bars(ax, result: CaseResult, names: list[str]) -> None:
    width = 0.38
    labelled: set[str] = set()

    def once(label: str) -> str | None:
        if label in labelled:
            return None
        labelled.add(label)
        return label

    for i, name in enumerate(names):
        pub = next(iter(result.case.published.get(name, {}).values()), None)
        sim = next(iter(result.simulated.get(name, {}).values()), None)
        if pub is not None:
            ax.bar(i - width / 2, pub, width, color="white", edgecolor="0.2",
                   hatch="//", label=once("published"))  # fmt: skip
        if sim is not None:
            ax.bar(i + width / 2, sim, width, color="0.45", edgecolor="0.2",
                   label=once("simulated"))  # fmt: skip
    ax.set_xticks(range(len(names)), [_label(result, n) for n in names])
