"""The validation table: one row per case, at most 80 columns.

::

    case                   published   simulated  criterion                result
    vmap-pernode-scaling        5.51        2.07  ratio at 32 within x2    gap

Below it, each known gap and error with its reason, wrapped, so the table
can be pasted into a reply (and into the README) as it is.
"""

from __future__ import annotations

import textwrap

from simcore._version import __version__
from simcore.validate.runner import ERROR, FAIL, GAP, PASS, CaseResult

WIDTH = 80
COLS = (("case", 22, "<"), ("published", 11, ">"), ("simulated", 11, ">"),
        ("criterion", 25, "<"), ("result", 6, "<"))  # fmt: skip


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


def render_table(results: list[CaseResult], *, quick: bool = False) -> str:
    mode = " (quick: reduced runs)" if quick else ""
    lines = [f"simcore validate{mode}: simulated vs published", ""]
    lines.append(_row([c[0] for c in COLS]))
    lines.append("-" * (sum(c[1] for c in COLS) + len(COLS) - 1))
    for r in results:
        v = r.verdict
        lines.append(
            _row(
                [
                    r.case.name,
                    num(v.published if v else None),
                    num(v.simulated if v else None),
                    r.case.rule.describe(r.case.has_x),
                    r.status,
                ]
            )
        )
    counts = {s: sum(r.status == s for r in results) for s in (PASS, GAP, FAIL, ERROR)}
    lines.append("")
    lines.append(
        f"{len(results)} cases: {counts[PASS]} pass, {counts[GAP]} known gap, "
        f"{counts[FAIL]} fail, {counts[ERROR]} error"
    )
    notes = _notes(results)
    if notes:
        lines += ["", *notes]
    lines += ["", f"simcore {__version__}; regenerate with: python -m simcore validate"]
    return "\n".join(lines) + "\n"


def _notes(results: list[CaseResult]) -> list[str]:
    out = []
    for r in results:
        reasons = []
        if r.error:
            reasons.append(f"error: {r.error}")
        elif r.verdict is not None and r.verdict.simulated is None:
            reasons.append(f"no simulated quantity: {r.verdict.reason}")
        if r.status == GAP:
            reasons.append(f"known gap: {r.case.spec.known_gap}")
        elif r.status == PASS and r.case.spec.known_gap:
            reasons.append("passes, but the case still declares a known gap")
        for text in reasons:
            out += textwrap.wrap(
                f"{r.case.name}: {' '.join(text.split())}",
                width=WIDTH - 1,
                subsequent_indent="  ",
            )
    return out
