"""summary.txt: strategies side by side in at most 80 columns.

Rendered from ``metrics.json`` alone so ``simcore report`` can redo it
without simulating. Like ``perf stat`` output it is meant to be pasted into
a mail: fixed width, no tabs, numbers in the units people say out loud, and
a footer that lets anyone rerun the exact configuration.

The headline rows lead, set off by a rule, and the detail follows (see
:mod:`.comparison` for what each holds). With more strategies than 80
columns hold, the table is split and every part repeats the baseline
column; the headline parts still come first. With one column the detail
takes its short forms (:mod:`.onecolumn`), so a single run's summary,
the quickstart's among them, stays short enough to paste.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from simcore.results.comparison import (
    Comparison,
    Origin,
    Section,
    build_comparison,
)
from simcore.results.onecolumn import matrix, packed, title_width
from simcore.results.textlayout import (
    GAP,
    WIDTH,
    cell_texts,
    chunks,
    fit,
    wrap_name,
    wrap_words,
)

# the model is built in .comparison; callers of the text form find it here
__all__ = [
    "WIDTH",
    "Comparison",
    "Origin",
    "build_comparison",
    "render_json",
    "render_summary",
    "render_text",
]

NAME_MAX = 14  # widest a column grows to fit its strategy's name unwrapped
WHAT_IF_MARK = "what-if"  # under the name of a strategy its era never shipped
LABEL_MAX = 28


@dataclass
class _Col:
    index: int
    name: str
    value_w: int
    half_w: int
    change_w: int
    mark_w: int
    what_if: bool = False  # the header says "what-if" under the name

    @property
    def content_w(self) -> int:
        w = self.value_w
        if self.half_w:
            w += 1 + self.half_w
        if self.change_w:
            w += GAP + self.change_w
        if self.mark_w:
            w += 1 + self.mark_w
        return w

    @property
    def width(self) -> int:
        w = max(self.content_w, min(len(self.name), NAME_MAX))
        return max(w, len(WHAT_IF_MARK)) if self.what_if else w

    def render(self, texts: tuple[str, str, str, str]) -> str:
        value, half, change, mark = texts
        s = value.rjust(self.value_w)
        if self.half_w:
            s += " " + half.ljust(self.half_w)
        if self.change_w:
            s += " " * GAP + change.rjust(self.change_w)
        if self.mark_w:
            s += " " + mark.ljust(self.mark_w)
        return s.rjust(self.width)


def _rows(sections: list[Section]):
    for sec in sections:
        for grp in sec.groups:
            yield from grp.rows


def _columns(comp: Comparison, sections: list[Section]) -> list[_Col]:
    cols = []
    for j, name in enumerate(comp.columns):
        texts = [cell_texts(r, r.cells[j], j == 0) for r in _rows(sections)]
        cols.append(
            _Col(
                j,
                name,
                max([len(t[0]) for t in texts] + [1]),
                max([len(t[1]) for t in texts] + [0]),
                max([len(t[2]) for t in texts] + [0]),
                max([len(t[3]) for t in texts] + [0]),
                name in comp.what_if,
            )
        )
    return cols


def _label_width(sections: list[Section]) -> int:
    widths = [len(s.title) for s in sections]
    for sec in sections:
        for grp in sec.groups:
            indent = 4 if grp.title else 2
            if grp.title:
                widths.append(2 + len(grp.title))
            widths += [indent + len(r.label) for r in grp.rows]
    return min(max(widths + [10]), LABEL_MAX)


# -- the table ----------------------------------------------------------------


def _section_lines(sec: Section, tcols: list[_Col], label_w: int) -> list[str]:
    """A section a row per metric, a column per strategy."""
    out = [sec.title]
    for grp in sec.groups:
        indent = "  "
        if grp.title:
            out.append(fit("  " + grp.title, label_w))
            indent = "    "
        for row in grp.rows:
            line = fit(indent + row.label, label_w).ljust(label_w)
            for c in tcols:
                texts = cell_texts(row, row.cells[c.index], c.index == 0)
                line += " " * GAP + c.render(texts)
            out.append(line.rstrip())
    return out


def _compact(comp: Comparison, shown: list[Section]) -> dict[str, list[str]]:
    """With one column, the detail sections' short forms (see
    :mod:`.onecolumn`), by title; a section missing here keeps its rows."""
    if len(comp.columns) != 1:
        return {}
    full = {s.title: s for s in comp.sections}
    detail = [s for s in shown if not s.headline]
    width = title_width(detail)
    out = {}
    for sec in detail:
        lines = matrix(full[sec.title], comp.show_all)
        if lines is None and sec.groups[0].title is None:
            lines = packed(sec, width)
        if lines is not None:
            out[sec.title] = lines
    return out


def _header(tcols: list[_Col], label_w: int) -> list[str]:
    out = []
    heads = [wrap_name(c.name, c.width) for c in tcols]
    if any(c.what_if for c in tcols):
        # a line of its own under the names, blank for the shipped ones
        heads = [
            h + [WHAT_IF_MARK if c.what_if else ""]
            for c, h in zip(tcols, heads, strict=True)
        ]
    depth = max(len(h) for h in heads)
    for line_no in range(depth):
        line = " " * label_w
        for c, h in zip(tcols, heads, strict=True):
            pad = depth - len(h)
            text = h[line_no - pad] if line_no >= pad else ""
            line += " " * GAP + text.rjust(c.width)
        out.append(line.rstrip())
    return out


def render_text(comp: Comparison) -> str:
    out: list[str] = []
    out += wrap_words(comp.title)
    for note in comp.notes:
        out += wrap_words(note)
    shown = comp.visible()
    compact = _compact(comp, shown)
    parts = [
        p
        for p in (
            [s for s in shown if s.headline],
            [s for s in shown if not s.headline],
        )
        if p
    ]
    # widths from the sections printed a row per metric: the others size
    # themselves
    rowed = [s for s in shown if s.title not in compact]
    label_w = _label_width(rowed or shown)
    cols = _columns(comp, rowed)
    tables = chunks([GAP + c.width for c in cols], label_w)
    for p, part in enumerate(parts):
        for table in tables:
            tcols = [cols[j] for j in table]
            rule = "-" * min(label_w + sum(GAP + c.width for c in tcols), WIDTH)
            # one table: the headline and the detail share its header,
            # set apart by a rule
            if p == 0 or len(tables) > 1:
                out.append("")
                out += _header(tcols, label_w)
                out.append(rule)
            for sec in part:
                lines = compact.get(sec.title)
                out += lines if lines else _section_lines(sec, tcols, label_w)
            out.append(rule)
    for entry in comp.footer:
        out += wrap_words(entry, WIDTH, ", ")
    return "\n".join(line[:WIDTH].rstrip() for line in out) + "\n"


def render_json(comp: Comparison) -> str:
    return json.dumps(comp.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_summary(doc: dict, meta: dict, *, show_all: bool = False) -> str:
    """``doc`` is metrics.json; ``meta`` adds name, profile, cpus, preset, duration."""
    return render_text(build_comparison(doc, meta, show_all=show_all))
