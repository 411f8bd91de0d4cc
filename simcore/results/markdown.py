"""The summary as GitHub-flavoured markdown (``--format markdown``).

For issue trackers and patchwork comments that render markdown. Tables
cannot wrap a column name the way summary.txt does, so a name wider than
``NAME_MAX`` is shortened, and tables split, always keeping the baseline,
so that the source stays within 80 columns and reads in a mail too.
"""

from __future__ import annotations

import re

from simcore.results.comparison import Comparison
from simcore.results.textlayout import WIDTH, cell_texts, chunks, wrap_words

NAME_MAX = 20
LABEL_MAX = 26
_MARK = re.compile(r"(?<!\S)([+~-])(?!\S)")


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _key(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"Z{i - 25}"


def _prose(text: str) -> str:
    # a lone + or - starting a wrapped line would begin a list, two ~ strike
    # through: quote the marks the notes explain
    return _MARK.sub(r"`\1`", text)


def render_markdown(comp: Comparison) -> str:
    out: list[str] = []
    title = _prose(comp.title)
    if len(title) <= WIDTH - 4:
        out.append(f"### {title}")
    else:
        out += wrap_words(title)
    for note in comp.notes:
        out.append("")
        out += wrap_words(_prose(note))

    body: list[tuple[str, list[tuple[str, str]] | None]] = []
    for sec in comp.visible():
        body.append((f"**{_fit(sec.title, LABEL_MAX - 4)}**", None))
        for grp in sec.groups:
            if grp.title:
                body.append((f"*{_fit(grp.title, LABEL_MAX - 2)}*", None))
            for row in grp.rows:
                cells = []
                for j, cell in enumerate(row.cells):
                    value, half, change, mark = cell_texts(row, cell, j == 0)
                    v = f"{value} {half}" if half else value
                    # a blank where the mark goes keeps the % signs aligned
                    c = f"{change} {mark or ' '}" if change else ""
                    cells.append((v, c))
                body.append((row.label, cells))

    names = list(comp.columns)
    if any(len(n) > NAME_MAX for n in names):
        # cut names would no longer tell columns apart: letters and a key
        names = [_key(i) for i in range(len(names))]
        out.append("")
        out += wrap_words(
            "columns: "
            + ", ".join(f"{k} = {n}" for k, n in zip(names, comp.columns, strict=True)),
            WIDTH,
            ", ",
        )
    label_w = max([len("metric")] + [len(lbl) for lbl, _ in body])
    label_w = min(label_w, LABEL_MAX)
    value_w, change_w = [], []
    for j, name in enumerate(names):
        vals = [c[j][0] for _, c in body if c is not None]
        chs = [c[j][1] for _, c in body if c is not None]
        value_w.append(max([len(name), 3] + [len(v) for v in vals]))
        change_w.append(max([len("change")] + [len(c) for c in chs]) if j else 0)
    widths = [value_w[j] + 3 + (change_w[j] + 3 if j else 0) for j in range(len(names))]
    for table in chunks(widths, label_w + 4):
        out.append("")
        head = ["metric".ljust(label_w)]
        rule = [":" + "-" * (label_w - 1)]
        for j in table:
            head.append(names[j].rjust(value_w[j]))
            rule.append("-" * (value_w[j] - 1) + ":")
            if j:
                head.append("change".rjust(change_w[j]))
                rule.append("-" * (change_w[j] - 1) + ":")
        out.append("| " + " | ".join(head) + " |")
        out.append("| " + " | ".join(rule) + " |")
        for label, cells in body:
            row = [_fit(label, label_w).ljust(label_w)]
            for j in table:
                v, c = cells[j] if cells is not None else ("", "")
                row.append(v.rjust(value_w[j]))
                if j:
                    row.append(c.rjust(change_w[j]))
            out.append("| " + " | ".join(row) + " |")
    for entry in comp.footer:
        out.append("")
        out += wrap_words(entry, WIDTH, ", ")
    return "\n".join(out) + "\n"
