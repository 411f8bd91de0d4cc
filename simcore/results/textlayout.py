"""Fixed-width text helpers shared by the text and markdown summaries.

Mail readers and terminals are 80 columns wide: names wrap at their own
separators rather than mid-word, wide tables split into parts that each
repeat the baseline, and a cell prints as value, interval, change and mark.
"""

from __future__ import annotations

from simcore.results.comparison import Cell, Row
from simcore.results.fmt import human, human_half

WIDTH = 80
GAP = 2


def cell_texts(row: Row, cell: Cell, baseline: bool) -> tuple[str, str, str, str]:
    """(value, ±half, change, mark) of a cell as printed."""
    if cell.value is None:
        return "-", "", "", ""
    value = human(cell.value, row.unit)
    half = ""
    if cell.low is not None and cell.high is not None:
        half = "±" + human_half((cell.high - cell.low) / 2, cell.value, row.unit)
    if baseline:
        return value, half, "", ""
    return value, half, cell.change, cell.mark


def wrap_name(name: str, width: int) -> list[str]:
    """Split a column name after ``_ : - . / =`` to fit a column."""
    pieces, cur = [], ""
    for ch in name:
        cur += ch
        if ch in "_:-./=":
            pieces.append(cur)
            cur = ""
    if cur:
        pieces.append(cur)
    lines, line = [], ""
    for p in pieces:
        if len(line) + len(p) <= width:
            line += p
            continue
        if line:
            lines.append(line)
        line = p
        while len(line) > width:
            lines.append(line[:width])
            line = line[width:]
    if line:
        lines.append(line)
    return lines or [""]


def wrap_words(text: str, width: int = WIDTH, sep: str = " ") -> list[str]:
    """Wrap at ``sep`` (a line ends with the separator's punctuation, so
    ``", "`` keeps its comma); a piece wider than ``width`` is cut."""
    tail = sep.rstrip()
    lines, cur = [], ""
    for word in text.split(sep):
        cand = f"{cur}{sep}{word}" if cur else word
        if cur and len(cand) > width:
            lines.append(cur + tail)
            cur = word
        else:
            cur = cand
    lines.append(cur)
    out = []
    for line in lines:
        while len(line) > width:
            out.append(line[:width])
            line = line[width:]
        out.append(line.rstrip())
    return out


def chunks(widths: list[int], fixed: int, limit: int = WIDTH) -> list[list[int]]:
    """Split columns 1.. into tables, each led by column 0, within ``limit``.

    ``widths[j]`` is column j's width including its left gap; ``fixed`` the
    label column's. A column too wide even alone goes into a table alone.
    """
    out: list[list[int]] = []
    cur = [0]
    used = fixed + widths[0]
    for j in range(1, len(widths)):
        if len(cur) > 1 and used + widths[j] > limit:
            out.append(cur)
            cur, used = [0], fixed + widths[0]
        cur.append(j)
        used += widths[j]
    out.append(cur)
    return out


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` with a ``~`` where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "~"
