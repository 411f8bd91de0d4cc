"""The summary and the resolved configs as HTML.

The table is the one summary.txt prints (:mod:`simcore.results.comparison`),
headline first, but never split: a browser scrolls sideways where a mail
cannot. Every row carries its dotted metric name as a tooltip, so a reader
can find it in metrics.json.
"""

from __future__ import annotations

from simcore.results.comparison import Comparison, Row
from simcore.results.html.page import esc, table
from simcore.results.textlayout import cell_texts

_MARK_CLASS = {"+": "better", "-": "worse", "~": "ns"}


def _cells(row: Row) -> str:
    out = []
    for j, cell in enumerate(row.cells):
        value, half, change, mark = cell_texts(row, cell, j == 0)
        out.append(
            f'<td class="num">{esc(value)}{" " + esc(half) if half else ""}</td>'
        )
        if j:
            cls = _MARK_CLASS.get(mark, "")
            attr = f' class="num {cls}"' if cls else ' class="num"'
            out.append(f"<td{attr}>{esc(change)} {esc(mark)}</td>")
    return "".join(out)


def comparison_html(comp: Comparison) -> str:
    """Notes, then the table: a header per column (and its change against
    the baseline), a heading row per section and group, a row per metric."""
    head = ["metric"]
    for j, name in enumerate(comp.columns):
        head += [name, "change"] if j else [name]
    span = len(head)
    rows = []
    for sec in comp.visible():
        rows.append(
            f'<tr class="section"><th colspan="{span}">{esc(sec.title)}</th></tr>'
        )
        for grp in sec.groups:
            if grp.title:
                rows.append(
                    f'<tr class="group"><td colspan="{span}">{esc(grp.title)}</td></tr>'
                )
            cls = ' class="headline"' if sec.headline else ""
            for row in grp.rows:
                rows.append(
                    f'<tr{cls}><td title="{esc(row.metric)}">{esc(row.label)}</td>'
                    f"{_cells(row)}</tr>"
                )
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in comp.notes)
    foot = "".join(f'<p class="note">{esc(f)}</p>' for f in comp.footer)
    return notes + table(head, rows) + foot


def config_html(configs: list[tuple[str, str]]) -> str:
    """Each folder's config.yaml as written: (heading, text) pairs."""
    return "\n".join(
        f"<h3>{esc(title)}</h3>\n<pre>{esc(text)}</pre>" for title, text in configs
    )
