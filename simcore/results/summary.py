"""summary.txt: strategies side by side in at most 80 columns.

Rendered from ``metrics.json`` alone so ``simcore report`` can redo it
without simulating. Like ``perf stat`` output it is meant to be pasted into
a mail: fixed width, no tabs, numbers in the units people say out loud, and
a footer that lets anyone rerun the exact configuration.

The first strategy is the baseline. Every other column shows its value and
its signed change against the baseline (``-41.2%`` means 41.2% less), then
one mark: ``+`` the change is an improvement for that metric, ``-`` a
regression (per the catalog's ``better``), ``~`` the 95% intervals of the
replications overlap so the difference is not significant. With more
strategies than 80 columns hold, the table is split and every part repeats
the baseline column.

:func:`build_comparison` computes the table once; text (here), markdown
(:mod:`simcore.results.markdown`) and JSON render it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from simcore.metrics import OWNERS
from simcore.metrics.catalog import lookup, rank
from simcore.results.fmt import change_pct, format_change, human, human_half
from simcore.results.stats import Interval, overlap

WIDTH = 80
GAP = 2
NAME_MAX = 14  # widest a column grows to fit its strategy's name unwrapped
LABEL_MAX = 28

BY_OWNER = "TLB by owner"
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLB", ("itlb", "dtlb", "stlb")),
    ("Page walks", ("pagewalk",)),
    # itlb.misses.<owner> and the like: whose code or data missed
    (BY_OWNER, ()),
    ("CPU time", ("cpu",)),
    ("Shootdowns", ("tlb",)),
    ("Direct map", ("directmap",)),
    ("Locks", ("lock",)),
    ("Memory", ("mem",)),
    ("Page allocator", ("buddy",)),
    ("Allocation latency", ("alloc",)),
    ("vmap", ("vmap", "vmalloc")),
    ("Executable memory", ("bpf", "module", "text_poke")),
    ("BPF arena", ("arena",)),
    ("Workload", ("workload",)),
    ("test_vmalloc", ("test_vmalloc",)),
    ("Simulator", ("sim",)),
)
OTHER = "Other"
_BY_OWNER_IDX = [t for t, _ in SECTIONS].index(BY_OWNER)
_OWNED_HEADS = ("itlb", "dtlb", "stlb", "pagewalk")


@dataclass
class Cell:
    value: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    change: str = ""  # formatted change against the baseline
    change_pct: float | None = None
    mark: str = ""  # "+" better, "-" worse, "~" not significant, "" none


@dataclass
class Row:
    metric: str
    label: str
    unit: str
    better: str
    cells: list[Cell]


@dataclass
class Group:
    title: str | None  # a lock or an allocator operation; None: no subgroup
    rows: list[Row] = field(default_factory=list)


@dataclass
class Section:
    title: str
    groups: list[Group] = field(default_factory=list)


@dataclass
class Comparison:
    title: str
    columns: list[str]
    notes: list[str]
    sections: list[Section]
    footer: list[str]
    replications: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Origin:
    """Where a set of columns came from: one results folder."""

    label: str | None
    doc: dict
    meta: dict
    folder: str | None = None


def _owned(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 3 and parts[0] in _OWNED_HEADS and parts[2] in OWNERS


def _section_of(name: str) -> tuple[int, str, tuple[str, ...]]:
    if _owned(name):
        return _BY_OWNER_IDX, BY_OWNER, ()
    head = name.split(".")[0]
    for i, (title, prefixes) in enumerate(SECTIONS):
        if head in prefixes:
            return i, title, prefixes
    return len(SECTIONS), OTHER, ()


def _place(name: str) -> tuple[str, str | None, str]:
    """(section title, subgroup, row label) of a metric."""
    _, title, prefixes = _section_of(name)
    parts = name.split(".")
    if title == BY_OWNER:  # grouped by owner, rows named as the totals
        return title, parts[2], f"{parts[0]}.{parts[1]}"
    if parts[0] in ("lock", "alloc") and len(parts) > 2:
        rest = ".".join(parts[2:])
        if parts[0] == "alloc" and rest.startswith("latency_ns."):
            rest = rest[len("latency_ns.") :]
        return title, parts[1], rest
    if len(prefixes) == 1 and len(parts) > 1:
        return title, None, ".".join(parts[1:])
    return title, None, name


def _row_key(name: str) -> tuple:
    idx = _section_of(name)[0]
    _, group, _ = _place(name)
    return (idx, group or "", rank(name), name)


def _interval(doc: dict, strategy: str, name: str) -> Interval | None:
    rep = doc.get("replications", {}).get(strategy, {}).get(name)
    if rep is None:
        return None
    return Interval(rep["mean"], rep["ci95_low"], rep["ci95_high"], rep["n"])


def _mark(row_better: str, v: float, b: float, pct: float | None, ns: bool) -> str:
    if v == b or (pct is not None and abs(pct) < 0.05):
        return ""
    if ns:
        return "~"
    if row_better == "lower":
        return "+" if v < b else "-"
    if row_better == "higher":
        return "+" if v > b else "-"
    return ""


def _replications(doc: dict) -> int:
    ns = [m["n"] for per in doc.get("replications", {}).values() for m in per.values()]
    return max(ns) if ns else 0


def build_comparison(
    doc: dict, meta: dict, *, origins: list[Origin] | None = None
) -> Comparison:
    """The summary table of ``doc`` (metrics.json, possibly merged from
    several folders); ``meta`` comes from :func:`writer.meta_from_config`."""
    origins = origins or [Origin(None, doc, meta)]
    columns = list(doc["strategies"])
    reps = _replications(doc)
    names = sorted({k for s in columns for k in doc["strategies"][s]}, key=_row_key)
    sections: list[Section] = []
    for name in names:
        title, group, label = _place(name)
        if not sections or sections[-1].title != title:
            sections.append(Section(title))
        sec = sections[-1]
        if not sec.groups or sec.groups[-1].title != group:
            sec.groups.append(Group(group))
        info = lookup(name)
        unit = info.unit if info else "count"
        better = info.better if info else "none"
        cells: list[Cell] = []
        base_v = doc["strategies"][columns[0]].get(name)
        base_iv = _interval(doc, columns[0], name)
        for i, s in enumerate(columns):
            v = doc["strategies"][s].get(name)
            iv = _interval(doc, s, name)
            cell = Cell(v)
            if iv is not None:
                cell.low, cell.high, cell.n = iv.low, iv.high, iv.n
            if i and v is not None and base_v is not None:
                cell.change = format_change(v, base_v)
                cell.change_pct = change_pct(v, base_v)
                ns = iv is not None and base_iv is not None and overlap(iv, base_iv)
                cell.mark = _mark(better, v, base_v, cell.change_pct, ns)
            cells.append(cell)
        sec.groups[-1].rows.append(Row(name, label, unit, better, cells))
    return Comparison(
        title=_title([o.meta for o in origins]),
        columns=columns,
        notes=_notes(columns, reps),
        sections=sections,
        footer=[_footer(o, reps) for o in origins],
        replications=reps,
    )


def _title(metas: list[dict]) -> str:
    def common(key: str):
        vals = {str(m[key]) for m in metas}
        return metas[0][key] if len(vals) == 1 else None

    machine = " ".join(
        p
        for p in (
            f"{common('cpus')} CPUs" if common("cpus") is not None else "",
            str(common("profile") or ""),
        )
        if p
    )
    parts = [
        machine,
        f"kernel {common('preset')}" if common("preset") is not None else "",
        f"{common('duration')} simulated" if common("duration") is not None else "",
    ]
    name = common("name") or " vs ".join(dict.fromkeys(m["name"] for m in metas))
    rest = ", ".join(p for p in parts if p)
    return f"{name}: {rest}" if rest else str(name)


def _notes(columns: list[str], reps: int) -> list[str]:
    notes = []
    if reps:
        notes.append(f"values: mean ± 95% CI half-width over {reps} replications")
    if len(columns) > 1:
        notes.append(
            f"change: relative to {columns[0]}, marked + if better, - if worse"
        )
        if reps:
            notes.append(
                "~: the 95% intervals overlap, difference not significant at 95%"
            )
    return notes


def _footer(o: Origin, reps: int) -> str:
    d, m = o.doc, o.meta
    fields = [
        f"simcore {d['simcore_version']}",
        f"profile {m['profile']}",
        f"kernel {m['preset']}",
        f"seed {d['seed']}",
        str(m["duration"]),
        f"config {d['config_hash']}",
    ]
    if reps:
        fields.append(f"{reps} replications")
    text = ", ".join(fields)
    if o.label is None:
        return text
    where = f" (folder {o.folder})" if o.folder and o.folder != o.label else ""
    return f"{o.label}{where}: {o.meta['name']}, {text}"


# -- plain text ---------------------------------------------------------------


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


@dataclass
class _Col:
    index: int
    name: str
    value_w: int
    half_w: int
    change_w: int
    mark_w: int

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
        return max(self.content_w, min(len(self.name), NAME_MAX))

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


def _rows(comp: Comparison):
    for sec in comp.sections:
        for grp in sec.groups:
            yield from grp.rows


def _columns(comp: Comparison) -> list[_Col]:
    cols = []
    for j, name in enumerate(comp.columns):
        texts = [cell_texts(r, r.cells[j], j == 0) for r in _rows(comp)]
        cols.append(
            _Col(
                j,
                name,
                max([len(t[0]) for t in texts] + [1]),
                max([len(t[1]) for t in texts] + [0]),
                max([len(t[2]) for t in texts] + [0]),
                max([len(t[3]) for t in texts] + [0]),
            )
        )
    return cols


def _label_width(comp: Comparison) -> int:
    widths = [len(s.title) for s in comp.sections]
    for sec in comp.sections:
        for grp in sec.groups:
            indent = 4 if grp.title else 2
            if grp.title:
                widths.append(2 + len(grp.title))
            widths += [indent + len(r.label) for r in grp.rows]
    return min(max(widths + [10]), LABEL_MAX)


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


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def render_text(comp: Comparison) -> str:
    out: list[str] = []
    out += wrap_words(comp.title)
    for note in comp.notes:
        out += wrap_words(note)
    label_w = _label_width(comp)
    cols = _columns(comp)
    tables = chunks([GAP + c.width for c in cols], label_w)
    for table in tables:
        tcols = [cols[j] for j in table]
        total = label_w + sum(GAP + c.width for c in tcols)
        out.append("")
        heads = [wrap_name(c.name, c.width) for c in tcols]
        depth = max(len(h) for h in heads)
        for line_no in range(depth):
            line = " " * label_w
            for c, h in zip(tcols, heads, strict=True):
                pad = depth - len(h)
                text = h[line_no - pad] if line_no >= pad else ""
                line += " " * GAP + text.rjust(c.width)
            out.append(line.rstrip())
        out.append("-" * min(total, WIDTH))
        for sec in comp.sections:
            out.append(sec.title)
            for grp in sec.groups:
                indent = "  "
                if grp.title:
                    out.append(_fit("  " + grp.title, label_w))
                    indent = "    "
                for row in grp.rows:
                    line = _fit(indent + row.label, label_w).ljust(label_w)
                    for c in tcols:
                        texts = cell_texts(row, row.cells[c.index], c.index == 0)
                        line += " " * GAP + c.render(texts)
                    out.append(line.rstrip())
        out.append("-" * min(total, WIDTH))
    for entry in comp.footer:
        out += wrap_words(entry, WIDTH, ", ")
    return "\n".join(line[:WIDTH].rstrip() for line in out) + "\n"


def render_json(comp: Comparison) -> str:
    return json.dumps(comp.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_summary(doc: dict, meta: dict) -> str:
    """``doc`` is metrics.json; ``meta`` adds name, profile, cpus, preset, duration."""
    return render_text(build_comparison(doc, meta))
