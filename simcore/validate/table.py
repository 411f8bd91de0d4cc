"""The validation table: one row per case, at most 80 columns.

::

    case                   published simulated criterion                 status ind
    vmap-pernode-scaling        5.51      2.79 ratio at 32 within x1.5   fail   yes

``ind``: independent, no value the case runs on was fitted to it or to its
source. Below the table, every failure and error with its reason and the
mechanism it points at, wrapped, so the table can be pasted into a reply
(and into the README) as it is. :func:`render_markdown` is the same table
for an RFC appendix, :func:`render_json` one object per case.
"""

from __future__ import annotations

import json
import textwrap

from simcore._version import __version__
from simcore.validate.runner import ERROR, FAIL, PASS, CaseResult

WIDTH = 80
COLS = (("case", 22, "<"), ("published", 9, ">"), ("simulated", 9, ">"),
        ("criterion", 25, "<"), ("status", 6, "<"), ("ind", 3, "<"))  # fmt: skip


def num(v: float | None) -> str:
    """Three significant digits, K/M for large counts."""
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}K"
    if a >= 1e3:
        return f"{v:.0f}"
    if a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _row(cells: list[str]) -> str:
    out = []
    for text, (_, width, align) in zip(cells, COLS, strict=True):
        out.append(f"{_cut(text, width):{align}{width}}")
    return " ".join(out).rstrip()


def summary_line(results: list[CaseResult]) -> str:
    """``N pass (M independent), K fail, E error of T``"""
    n = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, ERROR)}
    indep = sum(r.status == PASS and r.independent for r in results)
    return (
        f"{n[PASS]} pass ({indep} independent), {n[FAIL]} fail, "
        f"{n[ERROR]} error of {len(results)}"
    )


def _cells(r: CaseResult) -> list[str]:
    v = r.verdict
    return [
        r.case.name,
        num(v.published if v else None),
        num(v.simulated if v else None),
        r.case.rule.describe(r.case.has_x),
        r.status,
        "yes" if r.independent else "no",
    ]


def render_table(results: list[CaseResult], *, quick: bool = False) -> str:
    mode = " (quick: reduced runs)" if quick else ""
    lines = [f"simcore validate{mode}: simulated vs published", ""]
    lines.append(_row([c[0] for c in COLS]))
    lines.append("-" * (sum(c[1] for c in COLS) + len(COLS) - 1))
    lines += [_row(_cells(r)) for r in results]
    lines += ["", summary_line(results)]
    notes = _notes(results)
    if notes:
        lines += ["", *notes]
    lines += ["", f"simcore {__version__}; regenerate with: python -m simcore validate"]
    return "\n".join(lines) + "\n"


def _notes(results: list[CaseResult]) -> list[str]:
    out = []
    for r in results:
        if r.status == PASS:
            continue
        texts = [f"{r.status}: {r.reason}"]
        if r.case.spec.mechanism:
            texts.append(f"points at: {r.case.spec.mechanism}")
        for text in texts:
            out += textwrap.wrap(
                f"{r.case.name}: {' '.join(text.split())}",
                width=WIDTH - 1,
                subsequent_indent="  ",
            )
    return out


def render_markdown(results: list[CaseResult], *, quick: bool = False) -> str:
    """The table for an RFC appendix: a GitHub-flavoured Markdown table,
    the summary line and the reasons, with each case's source."""
    head = "| case | source | published | simulated | ratio | criterion | result | independent |"
    lines = [head, "|" + " --- |" * 8]
    for r in results:
        v = r.verdict
        ratio = v.ratio if v else None
        cells = _cells(r)
        lines.append(
            f"| {cells[0]} | `{r.case.spec.source.ref}` | {cells[1]} | {cells[2]} "
            f"| {'-' if ratio is None else f'{ratio:.3g}'} | {cells[3]} | {cells[4]} "
            f"| {cells[5]} |"
        )
    lines += ["", summary_line(results) + (" (quick: reduced runs)" if quick else "")]
    reasons = [
        f"- `{r.case.name}`: {' '.join(r.reason.split())}"
        + (
            f" Points at: {' '.join(r.case.spec.mechanism.split())}"
            if r.case.spec.mechanism
            else ""
        )
        for r in results
        if r.status != PASS
    ]
    if reasons:
        lines += ["", *reasons]
    return "\n".join(lines) + "\n"


def case_object(r: CaseResult) -> dict:
    """One case as ``--format json`` prints it."""
    v = r.verdict
    rule = r.case.rule
    low = high = None
    if v is not None and v.published is not None:
        low, high = rule.bounds(v.published)
    return {
        "case": r.case.name,
        "status": r.status,
        "published": v.published if v else None,
        "simulated": v.simulated if v else None,
        "ratio": v.ratio if v else None,
        "criterion": {
            "kind": rule.quantity,
            "factor": rule.factor,
            "low": low,
            "high": high,
            "text": rule.describe(r.case.has_x),
        },
        "independent": r.independent,
        "fitted_values": r.fitted,
        "source": r.case.spec.source.model_dump(exclude_none=True),
        "reason": r.reason or None,
        "mechanism": r.case.spec.mechanism,
    }


def render_json(results: list[CaseResult], *, quick: bool = False) -> str:
    doc = {
        "simcore_version": __version__,
        "quick": quick,
        "summary": summary_line(results),
        "cases": [case_object(r) for r in results],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
