"""The summary's content, computed once from metrics.json.

The first strategy is the baseline. Every other column carries its value,
its signed change against the baseline (``-41.2%`` means 41.2% less) and
one mark: ``+`` the change is an improvement for that metric, ``-`` a
regression (per the catalog's ``better``), ``~`` the 95% intervals of the
replications overlap so the difference is not significant.

Answer first: the *headline* section leads with the metrics an RFC thread
argues about (:data:`simcore.metrics.catalog.HEADLINE`), under their human
labels, and the detail sections follow without repeating them. Per-load
figures (:mod:`simcore.metrics.derived`) join the counters they come from.
A row that is zero in every column is kept but flagged ``all_zero``: text,
markdown and HTML leave it out unless asked for everything (``--all``),
JSON carries it with the flag.

Text (:mod:`.summary`), markdown (:mod:`.markdown`), JSON and HTML render
this one model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from simcore.metrics import OWNERS
from simcore.metrics.catalog import HEADLINE, WHAT_IF, label_of, lookup, rank
from simcore.metrics.derived import RATIOS, derive
from simcore.results.fmt import change_pct, format_change
from simcore.results.stats import Interval, ci95, overlap

HEADLINE_TITLE = "Headline"
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
    ("Reclaim", ("vmscan",)),
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
    all_zero: bool = False  # zero (or absent) in every column


@dataclass
class Group:
    title: str | None  # a lock or an allocator operation; None: no subgroup
    rows: list[Row] = field(default_factory=list)


@dataclass
class Section:
    title: str
    groups: list[Group] = field(default_factory=list)
    headline: bool = False


@dataclass
class Comparison:
    title: str
    columns: list[str]
    notes: list[str]
    sections: list[Section]
    footer: list[str]
    replications: int = 0
    hidden: int = 0  # all-zero rows the text forms leave out
    show_all: bool = False
    # the columns no release of their run's preset shipped (metric
    # WHAT_IF); the text form says so under their names
    what_if: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def visible(self) -> list[Section]:
        """The sections as printed: without all-zero rows unless
        ``show_all``, and without groups and sections left empty."""
        out = []
        for sec in self.sections:
            groups = []
            for g in sec.groups:
                rows = [r for r in g.rows if self.show_all or not r.all_zero]
                if rows:
                    groups.append(replace(g, rows=rows))
            if groups:
                out.append(replace(sec, groups=groups))
        return out


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


def _intervals(doc: dict, strategy: str) -> dict[str, Interval]:
    """Replication intervals of a column, derived figures included: those
    are derived replication by replication, then averaged."""
    reps = doc.get("replications", {}).get(strategy, {})
    out = {
        name: Interval(r["mean"], r["ci95_low"], r["ci95_high"], r["n"])
        for name, r in reps.items()
    }
    needed = {m for _, num, dens, _ in RATIOS for m in (num, *dens)}
    per_rep = {m: reps[m]["values"] for m in needed if "values" in reps.get(m, {})}
    lengths = {len(v) for v in per_rep.values()}
    if len(lengths) != 1 or lengths == {1}:
        return out
    samples: dict[str, list[float]] = {}
    for i in range(lengths.pop()):
        for name, v in derive({m: vals[i] for m, vals in per_rep.items()}).items():
            samples.setdefault(name, []).append(v)
    for name, vals in samples.items():
        out[name] = ci95(vals)
    return out


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


def _row(
    name: str,
    label: str,
    columns: list[str],
    values: dict[str, dict],
    ivs: dict[str, dict[str, Interval]],
) -> Row:
    info = lookup(name)
    unit = info.unit if info else "count"
    better = info.better if info else "none"
    base_v = values[columns[0]].get(name)
    base_iv = ivs[columns[0]].get(name)
    cells: list[Cell] = []
    for i, s in enumerate(columns):
        v = values[s].get(name)
        iv = ivs[s].get(name)
        cell = Cell(v)
        if iv is not None and iv.low is not None:
            # the mean is the value shown; a derived figure's interval is
            # over per-replication ratios, whose mean may differ slightly
            cell.low, cell.high, cell.n = iv.low, iv.high, iv.n
        if i and v is not None and base_v is not None:
            cell.change = format_change(v, base_v)
            cell.change_pct = change_pct(v, base_v)
            ns = iv is not None and base_iv is not None and overlap(iv, base_iv)
            cell.mark = _mark(better, v, base_v, cell.change_pct, ns)
        cells.append(cell)
    zero = all(c.value in (None, 0) for c in cells)
    return Row(name, label, unit, better, cells, all_zero=zero)


def build_comparison(
    doc: dict,
    meta: dict,
    *,
    origins: list[Origin] | None = None,
    show_all: bool = False,
) -> Comparison:
    """The summary table of ``doc`` (metrics.json, possibly merged from
    several folders); ``meta`` comes from :func:`writer.meta_from_config`.
    ``show_all`` keeps the rows that are zero in every column in the text
    forms."""
    origins = origins or [Origin(None, doc, meta)]
    columns = list(doc["strategies"])
    reps = _replications(doc)
    values = {
        s: {**derive(doc["strategies"][s]), **doc["strategies"][s]} for s in columns
    }
    ivs = {s: _intervals(doc, s) for s in columns}
    # a label of the column, not a measurement: said in its header
    what_if = [s for s in columns if values[s].get(WHAT_IF)]
    present = {k for s in columns for k in values[s]} - {WHAT_IF}
    top = [n for n in HEADLINE if n in present]
    sections: list[Section] = []
    if top:
        rows = [_row(n, label_of(n), columns, values, ivs) for n in top]
        sections.append(Section(HEADLINE_TITLE, [Group(None, rows)], headline=True))
    for name in sorted(present - set(top), key=_row_key):
        title, group, label = _place(name)
        if not sections or sections[-1].title != title:
            sections.append(Section(title))
        sec = sections[-1]
        if not sec.groups or sec.groups[-1].title != group:
            sec.groups.append(Group(group))
        sec.groups[-1].rows.append(_row(name, label, columns, values, ivs))
    hidden = 0
    if not show_all:
        hidden = sum(r.all_zero for s in sections for g in s.groups for r in g.rows)
    return Comparison(
        title=_title([o.meta for o in origins]),
        columns=columns,
        notes=_notes(columns, reps, what_if),
        sections=sections,
        footer=_footers(origins, reps, hidden),
        replications=reps,
        hidden=hidden,
        show_all=show_all,
        what_if=what_if,
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


def _notes(columns: list[str], reps: int, what_if: list[str]) -> list[str]:
    notes = []
    if what_if:
        notes.append(
            f"what-if: {', '.join(what_if)}: no release up to the kernel preset"
            f" shipped {'it' if len(what_if) == 1 else 'them'}"
            " (simcore list strategies)"
        )
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


def _footers(origins: list[Origin], reps: int, hidden: int) -> list[str]:
    """A footer per folder; the rows left out are said at the end, as a
    last field of a single footer (the quickstart summary stays short)."""
    out = [_footer(o, reps) for o in origins]
    if hidden:
        what = f"{hidden} zero {'row' if hidden == 1 else 'rows'} hidden (--all)"
        if len(out) == 1:
            out[0] += f", {what}"
        else:
            out.append(what)
    return out


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
