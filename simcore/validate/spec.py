"""A validation case file (``validation/<name>.yaml``): model and loading.

A case names a published measurement (source, machine, figures), the
simulation that models it (an inline workload, optionally with a probe,
run once per *series* and x value) and a quantitative criterion. Loading
checks everything that can be checked without simulating, including
resolving every run's workload, so that a typo fails at once with the case
file's line, as workload and sweep files do.

Layout of a case file::

    name: vmap-lock-scaling            # = the file name
    title: one line
    area: vmalloc locking              # what it covers
    suitability: direct                # direct | partial | context
    source: {ref: <Message-ID or commit>, where: ..., machine: ..., kernel: ...}
    workload: {duration: ..., machine: ..., kernel: ..., workloads: [...]}
    probe: {type: static_key, ...}     # optional, instead of workloads
    series:                            # each a run (or one per x) of the workload
      default: {label: ..., set: {kernel.preset: "6.1"}}
    x: {param: workloads[0].nr_threads, label: ..., values: [1, 8, 32]}
    measure: {value: "m('stlb.misses')", unit: misses, label: ...}
    published: {default: {1: "0.58 usec", 32: "21.1 usec"}}  # as printed
    criterion: {quantity: ratio, num: default, den: patched, at: 32}
    quick: {x: [1, 32], set: {duration: 300us}}
    mechanism: what a failure points at in the model, as measured
    fitted: [what the case itself takes from its source, if anything]

Published figures are strings exactly as the source printed them, unit
included; :mod:`simcore.validate.printed` converts them to the measure's
unit. The criterion is two-sided: the simulated quantity within ``factor``
of the published one either way, 1.5 unless the case widens it, at most
to 2 and only with ``why:`` quoting the source on its own noise.

``set`` keys are workload paths as ``--set`` takes them (``machine.cpus``,
``workloads[0].nr_pages``, ``strategy``), or ``probe.<field>``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from simcore.config.errors import check_known_keys, validation_to_config_error
from simcore.config.load import (
    Resolved,
    apply_set,
    config_hash,
    parse_set_path,
    resolve,
)
from simcore.errors import ConfigError
from simcore.strict import Strict
from simcore.validate.criteria import CriterionError, Rule
from simcore.validate.expr import Expr, ExprError
from simcore.validate.printed import PrintedError, parse_factor, parse_printed
from simcore.validate.probes import ProbeConfig
from simcore.yamlsrc import Located, PathT, format_path, load_yaml_file

CASE_DIR = Path(__file__).resolve().parents[2] / "validation"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# what a case may cover (the list, plus module loading)
AREAS = (
    "vmalloc locking",
    "lazy purge",
    "huge vmalloc",
    "page allocation",
    "direct-map splits",
    "JIT packing",
    "text_poke batching",
    "shootdown costs",
    "module loading",
    "arena",
)
# a stand-in generator that lets a probe case's machine and kernel resolve
# (the schema wants one); it is removed before the simulation starts
_PLACEHOLDER = {"type": "vmalloc_stress", "nr_threads": 1, "test_loop_count": 1}


class Source(Strict):
    ref: str = Field(min_length=1, description="lore Message-ID, commit or paper table")
    where: str = Field(min_length=1, description="which table or paragraph")
    machine: str = Field(min_length=1)
    kernel: str | None = None
    notes: str | None = None


class Series(Strict):
    label: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)


class XAxis(Strict):
    param: str
    label: str
    values: list[int | float] = Field(min_length=1)
    log: bool = False

    @field_validator("values")
    @classmethod
    def _distinct(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("x values must be distinct")
        return v


class Measure(Strict):
    value: str
    label: str
    unit: str = ""
    log: bool = False

    @field_validator("value")
    @classmethod
    def _parses(cls, v: str) -> str:
        try:
            Expr(v)
        except ExprError as exc:
            raise ValueError(str(exc)) from None
        return v


DEFAULT_FACTOR = 1.5
MAX_FACTOR = 2.0


class Criterion(Strict):
    quantity: Literal["value", "ratio", "slope", "crossing"]
    series: str | None = None
    num: str | None = None
    den: str | None = None
    at: float | None = None
    factor: float = Field(default=DEFAULT_FACTOR, gt=1, le=MAX_FACTOR)
    why: str | None = Field(default=None, description="why a factor above 1.5")
    # the published ratio as printed, when the source gives only that
    # ("2X slower", "ten times more"); the ratio's series then need no
    # published points
    published: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Criterion:
        if self.factor > DEFAULT_FACTOR and not self.why:
            raise ValueError(
                f"factor {self.factor:g} is wider than {DEFAULT_FACTOR:g}: say why "
                "(why:, quoting the source on the noise of its figure)"
            )
        q = self.quantity
        if q in ("value", "slope") and (self.series is None or self.num or self.den):
            raise ValueError(f"{q} takes series: (and no num/den)")
        if q in ("ratio", "crossing") and (not self.num or not self.den or self.series):
            raise ValueError(f"{q} takes num: and den: (and no series)")
        if q in ("slope", "crossing") and self.at is not None:
            raise ValueError(f"{q} uses every x value: no at:")
        return self

    def rule(self) -> Rule:
        return Rule(
            quantity=self.quantity,
            series=self.series,
            num=self.num,
            den=self.den,
            at=self.at,
            factor=self.factor,
        )


class Quick(Strict):
    x: list[int | float] | None = Field(default=None, min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)


class CaseFile(Strict):
    # the table has 22 columns for it
    name: str = Field(pattern=NAME_PATTERN, max_length=22)
    title: str
    area: str
    suitability: Literal["direct", "partial", "context"]
    source: Source
    workload: dict[str, Any]
    probe: ProbeConfig | None = None  # type: ignore[valid-type]
    series: dict[str, Series] = Field(min_length=1)
    x: XAxis | None = None
    measure: Measure
    published: dict[str, str | dict[float, str]] = Field(default_factory=dict)
    criterion: Criterion
    quick: Quick
    mechanism: str | None = Field(
        default=None, description="what a failure points at in the model"
    )
    # numbers the case itself takes from its own source (a constant in its
    # measure read off the published table): the case is then not independent
    fitted: list[str] = Field(default_factory=list)

    @field_validator("published", mode="before")
    @classmethod
    def _as_printed(cls, v: Any) -> Any:
        for val in v.values() if isinstance(v, dict) else ():
            for one in val.values() if isinstance(val, dict) else [val]:
                if isinstance(one, int | float):
                    raise ValueError(
                        f"{one!r}: write each figure as the source printed it, "
                        'quoted, with its unit (e.g. "911,381 usec")'
                    )
        return v

    @field_validator("area")
    @classmethod
    def _area(cls, v: str) -> str:
        if v not in AREAS:
            raise ValueError(f"unknown area {v!r} (known: {', '.join(AREAS)})")
        return v


@dataclass
class Run:
    """One simulation of a case: a series at an x value."""

    series: str
    x: float  # 0 when the case has no x axis
    resolved: Resolved
    probe: Any = None  # a probe config, started beside the workload's generators


@dataclass
class Case:
    file: str
    spec: CaseFile
    located: Located
    published: dict[str, dict[float, float]]
    rule: Rule
    runs: list[Run] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_x(self) -> bool:
        return self.spec.x is not None


def case_files(folder: Path = CASE_DIR) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def find_case(name: str, folder: Path = CASE_DIR) -> Path:
    """A case by name (``validation/<name>.yaml``) or by path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    target = folder / f"{name}.yaml"
    if target.is_file():
        return target
    known = [f.stem for f in case_files(folder)]
    hint = difflib.get_close_matches(name, known, n=1)
    tip = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(
        f"no validation case {name!r}{tip}",
        file="--case",
        expected="one of " + ", ".join(known) + ", or a path to a case file",
    )


def load_case(path: str | Path, *, quick: bool = False) -> Case:
    """Read and check a case, resolving the workload of every run."""
    located = load_yaml_file(path)
    file = located.file
    if not isinstance(located.data, dict):
        raise ConfigError(
            "the top level must be a mapping",
            file=file,
            line=1,
            expected="keys such as name, source, workload, series, criterion",
        )
    _known_keys(located)
    try:
        spec = CaseFile.model_validate(located.data)
    except ValidationError as exc:
        raise validation_to_config_error(
            exc, file=file, model=CaseFile, located=located
        ) from None
    stem = Path(file).stem
    if spec.name != stem:
        _fail(
            located, ("name",), f"name {spec.name!r} differs from the file name", stem
        )
    published = _published(spec, located)
    # quick.x is checked in either mode, so a full run finds its typos too
    for i, v in enumerate(spec.quick.x or []):
        if spec.x is None:
            _fail(located, ("quick", "x"), "quick.x needs an x axis")
        if v not in spec.x.values:
            _fail(located, ("quick", "x", i), f"x = {v:g} is not in x.values")
    rule = spec.criterion.rule()
    if spec.criterion.published is not None:
        if spec.criterion.quantity != "ratio":
            _fail(located, ("criterion", "published"), "a printed factor is a ratio")
        try:
            factor = parse_factor(spec.criterion.published)
        except PrintedError as exc:
            _fail(located, ("criterion", "published"), str(exc), "e.g. '2X slower'")
        rule = replace(rule, printed=factor)
    elif not published:
        _fail(
            located,
            ("published",),
            "no published figure",
            "published: or criterion.published:",
        )
    _check_criterion(spec, located, published, rule)
    case = Case(file, spec, located, published, rule)
    case.runs = _runs(case, quick)
    return case


def load_cases(names: list[str] | None = None, *, quick: bool = False) -> list[Case]:
    paths = [find_case(n) for n in names] if names else case_files()
    return [load_case(p, quick=quick) for p in paths]


def _known_keys(located: Located) -> None:
    """Unknown keys first, in every section: pydantic would report a
    misspelt required key as missing, without the hint that names the key
    the user meant."""
    data = located.data
    sections: list[tuple[PathT, type[Strict]]] = [
        ((), CaseFile),
        (("source",), Source),
        (("x",), XAxis),
        (("measure",), Measure),
        (("criterion",), Criterion),
        (("quick",), Quick),
    ]
    if isinstance(data.get("series"), dict):
        sections += [(("series", k), Series) for k in data["series"]]
    for path, model in sections:
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            check_known_keys(located, path, model)


def _fail(located: Located, path: PathT, msg: str, expected: str | None = None):
    raise ConfigError(
        msg,
        file=located.file,
        path=format_path(path),
        line=located.line_of(path),
        expected=expected,
    )


def _published(spec: CaseFile, located: Located) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = {}
    xs = set(spec.x.values) if spec.x else {0.0}
    for name, val in spec.published.items():
        where = ("published", name)
        if name not in spec.series:
            _fail(
                located,
                where,
                f"published series {name!r} is not simulated",
                "a name under series: " + ", ".join(spec.series),
            )
        if isinstance(val, dict):
            if spec.x is None:
                _fail(located, where, "points by x need an x: axis", "a number")
            pts = {
                float(k): _printed(located, (*where, k), v, spec.measure.unit)
                for k, v in val.items()
            }
            if not pts:
                _fail(located, where, "no published points", "{x: value, ...}")
            out[name] = pts
        else:
            if spec.x is not None and len(xs) != 1:
                _fail(
                    located,
                    where,
                    "one number for a case with several x values",
                    "{x: value, ...}",
                )
            x0 = float(next(iter(xs))) if spec.x else 0.0
            out[name] = {x0: _printed(located, where, val, spec.measure.unit)}
    return out


def _printed(located: Located, where: PathT, text: str, unit: str) -> float:
    try:
        return parse_printed(text, unit)
    except PrintedError as exc:
        _fail(
            located,
            where,
            str(exc),
            f'the figure as printed, e.g. "911,381 usec", in or convertible to {unit!r}',
        )


def _check_criterion(
    spec: CaseFile,
    located: Located,
    published: dict[str, dict[float, float]],
    rule: Rule,
) -> None:
    c = spec.criterion
    for key in ("series", "num", "den"):
        name = getattr(c, key)
        if name is not None and name not in spec.series:
            _fail(
                located,
                ("criterion", key),
                f"unknown series {name!r}",
                "one of " + ", ".join(spec.series),
            )
    if c.at is not None:
        if spec.x is None:
            _fail(located, ("criterion", "at"), "at: needs an x axis")
        runs = [spec.x.values] + ([spec.quick.x] if spec.quick.x else [])
        for values in runs:
            if c.at not in values:
                _fail(
                    located,
                    ("criterion", "at"),
                    f"x = {c.at:g} is not among the x values run",
                    "a value of x.values and of quick.x",
                )
    elif c.quantity in ("value", "ratio") and spec.x is not None:
        _fail(
            located, ("criterion",), f"{c.quantity} needs at: on a case with an x axis"
        )
    try:
        rule.published_quantity(published)
    except CriterionError as exc:
        _fail(located, ("criterion",), f"the published points give no quantity: {exc}")


def _runs(case: Case, quick: bool) -> list[Run]:
    spec = case.spec
    xs: list[float | None] = [None]
    if spec.x is not None:
        xs = list(spec.quick.x if quick and spec.quick.x else spec.x.values)
    runs = []
    for name, series in spec.series.items():
        for x in xs:
            sets = [(("series", name, "set", k), k, v) for k, v in series.set.items()]
            if quick:
                sets += [(("quick", "set", k), k, v) for k, v in spec.quick.set.items()]
            if x is not None:
                sets.append((("x", "param"), spec.x.param, x))  # type: ignore[union-attr]
            resolved, probe = _resolve_run(case, sets)
            runs.append(Run(name, float(x) if x is not None else 0.0, resolved, probe))
    return runs


def _resolve_run(
    case: Case, sets: list[tuple[PathT, str, Any]]
) -> tuple[Resolved, Any]:
    spec, located = case.spec, case.located
    # the inline workload keeps the case file's lines, so that its errors
    # point where the user wrote it
    lines = {p[1:]: ln for p, ln in located.lines.items() if p[:1] == ("workload",)}
    data = copy.deepcopy(spec.workload)
    data.setdefault("name", spec.name)
    probe = copy.deepcopy(located.data.get("probe"))
    placeholder = probe is not None and "workloads" not in data
    if placeholder:
        data["workloads"] = [dict(_PLACEHOLDER)]
    run = Located(data=data, file=located.file, lines=lines)
    # which line set each probe field, for errors in the value
    probe_sets: dict[tuple[str, ...], PathT] = {}
    for where, key, value in sets:
        if key.startswith("probe."):
            if probe is None:
                _fail(located, where, f"{key} is set, but the case has no probe")
            _set_probe(probe, key, value)
            probe_sets[tuple(key.split(".")[1:])] = where
            continue
        try:
            path = parse_set_path(key)
        except ValueError:
            _fail(
                located,
                where,
                f"{key!r} is not a workload path",
                "a path like machine.cpus, workloads[0].nr_pages or probe.sites",
            )
        try:
            apply_set(run, f"{key}={json.dumps(value)}")
        except ConfigError as exc:
            _fail(located, where, exc.message, exc.expected)
        # errors about the value point at the line that set it
        run.origins.pop(path, None)
        run.lines[path] = located.line_of(where) or 0
    resolved = resolve(run)
    if len(resolved.cfg.strategy) != 1:
        _fail(
            located,
            ("workload",),
            "a run simulates one strategy",
            "one strategy per series (set: {strategy: NAME})",
        )
    if probe is None:
        return resolved, None
    try:
        cfg = _probe_adapter().validate_python(probe)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field_path = tuple(str(p) for p in err["loc"][1:])
        where = probe_sets.get(field_path, ("probe", *field_path))
        _fail(located, where, f"probe.{'.'.join(field_path)}: {err['msg']}")
    # a probe replaces the placeholder generator; config.yaml records it
    data = dict(resolved.data)
    if placeholder:
        resolved.cfg = resolved.cfg.model_copy(update={"workloads": []})
        data["workloads"] = []
    data["probe"] = cfg.model_dump(mode="json")
    resolved = replace(
        resolved, data=data, config_hash=config_hash(data, resolved.captures)
    )
    return resolved, cfg


@functools.cache
def _probe_adapter() -> TypeAdapter:
    """Built once: a TypeAdapter builds its validator when made, and every
    run of every case validates a probe."""
    return TypeAdapter(ProbeConfig)


def _set_probe(probe: dict, key: str, value: Any) -> None:
    cur = probe
    parts = key.split(".")[1:]
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
