"""The detail of a summary with one column of values, kept short.

With one strategy nothing is compared, and the row-per-metric layout that
makes a comparison easy to read only makes the summary long. So the detail
sections take less room: a section of groups (a lock, an allocator
operation, an owner of TLB misses) becomes a table with a line per group
and a column per metric, as ``perf lock`` and ``/proc/lock_stat`` print
them, and any other section one line of ``name value`` pairs, wrapped
under its title. The headline keeps its column.
"""

from __future__ import annotations

from simcore.results.comparison import Row, Section
from simcore.results.textlayout import GAP, WIDTH, cell_texts, wrap_words

# unit suffixes a matrix column head drops: the cells carry the unit
_SUFFIXES = ("_ns", "_pct", "_bytes")


def _text(r: Row) -> str:
    value, half, _, _ = cell_texts(r, r.cells[0], True)
    return f"{value} {half}" if half else value


def _head(label: str) -> str:
    for suffix in _SUFFIXES:
        if label.endswith(suffix):
            return label[: -len(suffix)]
    return label


def matrix(sec: Section, show_all: bool) -> list[str] | None:
    """A section of groups (locks, operations, owners) with one column of
    values as a table: a line per group, a column per metric. Every cell of
    a shown group is printed, zeros included, so the lines read across;
    a group or a metric that is zero throughout is left out (unless
    ``show_all``). None when the section has no groups or is too wide."""
    if not sec.groups or any(g.title is None for g in sec.groups):
        return None

    def shown(r: Row) -> bool:
        return show_all or not r.all_zero

    groups = [g for g in sec.groups if any(shown(r) for r in g.rows)]
    heads: list[str] = []
    for g in groups:
        for r in g.rows:
            if shown(r) and r.label not in heads:
                heads.append(r.label)
    if not groups:
        return []

    cells = []
    for g in groups:
        by = {r.label: r for r in g.rows}
        cells.append([_text(by[h]) if h in by else "-" for h in heads])
    label_w = max([len(sec.title)] + [2 + len(str(g.title)) for g in groups])
    widths = [
        max([len(_head(h))] + [len(row[i]) for row in cells])
        for i, h in enumerate(heads)
    ]
    if label_w + sum(GAP + w for w in widths) > WIDTH:
        return None
    out = [
        sec.title.ljust(label_w)
        + "".join(
            " " * GAP + _head(h).rjust(w) for h, w in zip(heads, widths, strict=True)
        )
    ]
    for g, row in zip(groups, cells, strict=True):
        out.append(
            ("  " + str(g.title)).ljust(label_w)
            + "".join(" " * GAP + c.rjust(w) for c, w in zip(row, widths, strict=True))
        )
    return out


def title_width(sections: list[Section]) -> int:
    """The title column of the packed sections among ``sections``."""
    return max([len(s.title) for s in sections if not s.groups[0].title] + [0])


def packed(sec: Section, width: int) -> list[str]:
    """A section without groups as ``name value`` pairs after its title,
    wrapped at the pairs, continuation lines under the first pair."""
    pairs = ", ".join(f"{r.label} {_text(r)}" for g in sec.groups for r in g.rows)
    # one column spare: a wrapped line ends with the comma of its last pair
    lines = wrap_words(pairs, WIDTH - width - GAP - 1, ", ")
    pad = " " * (width + GAP)
    return [sec.title.ljust(width + GAP) + lines[0]] + [pad + x for x in lines[1:]]
