"""The sweep file (SWEEP.yaml): model, validation, and what it expands from.

Errors point at the sweep file the way workload errors do (file, YAML path,
line, a "did you mean" for unknown keys) because a sweep that dies on a typo
after an hour on a cluster is the failure this file exists to prevent: every
check that can run before the first point runs here or in ``points.expand``.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from simcore.config.errors import check_known_keys, validation_to_config_error
from simcore.config.load import parse_set_path
from simcore.errors import ConfigError
from simcore.strict import Strict
from simcore.yamlsrc import Located, PathT, format_path, load_yaml_file

# A typo such as ``step: 0.0001`` should fail here, not fill a cluster queue.
MAX_VALUES_PER_PARAMETER = 100_000


class RangeSpec(Strict):
    """``{start, stop, step}``; ``stop`` is included when a step lands on it."""

    start: int | float
    stop: int | float
    step: int | float = 1

    @field_validator("step")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("step must be greater than 0")
        return v

    def values(self) -> list[int | float]:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) is below start ({self.start})")
        count = math.floor((self.stop - self.start) / self.step + 1e-9) + 1
        if count > MAX_VALUES_PER_PARAMETER:
            raise ValueError(
                f"the range has {count} values, more than {MAX_VALUES_PER_PARAMETER}"
            )
        if all(isinstance(v, int) for v in (self.start, self.stop, self.step)):
            return list(range(self.start, self.stop + 1, self.step))
        # rounding keeps 0.1 + 2 * 0.1 from becoming 0.30000000000000004,
        # which would put a surprising value into sweep.csv and the configs
        return [round(self.start + i * self.step, 12) for i in range(count)]


class Parameters(Strict):
    grid: dict[str, Any] = Field(default_factory=dict)
    zip: dict[str, Any] = Field(default_factory=dict)


class ClusterSpec(Strict):
    """A dask-jobqueue cluster: ``jobs`` batch jobs of ``cores`` each."""

    kind: Literal["slurm", "pbs"]
    cores: int = Field(ge=1, le=4096)
    memory: str
    jobs: int = Field(default=1, ge=1, le=100_000)
    # one single-threaded worker per core by default: a point is pure-Python
    # SimPy and holds the GIL, so threads would not run points in parallel
    processes: int | None = Field(default=None, ge=1)
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    interface: str | None = None
    job_extra_directives: list[str] = Field(default_factory=list)
    # shell lines run before the worker starts (module load, venv activate)
    job_script_prologue: list[str] = Field(default_factory=list)
    # the workers' interpreter, when the driver's path is not valid there
    python: str | None = None


class SweepFile(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    base: str | dict[str, Any]
    parameters: Parameters
    seed: int = Field(default=1, ge=0, lt=2**63)
    seeds: int = Field(default=1, ge=1, le=100_000)
    metrics: list[str] = Field(min_length=1)
    x: str | None = None
    plugins: list[str] = Field(default_factory=list)
    cluster: ClusterSpec | None = None

    @field_validator("base", mode="before")
    @classmethod
    def _base_kind(cls, v: Any) -> Any:
        if not isinstance(v, (str, dict)):
            raise ValueError(
                "base must be a path to a workload file or an inline workload mapping"
            )
        return v


@dataclass
class Parameter:
    """One swept path and its values, with where each value was written."""

    key: str  # as written in the sweep file, e.g. "workloads[0].nr_pages"
    path: PathT  # parsed: ("workloads", 0, "nr_pages")
    section: str  # grid | zip
    values: list[Any]
    key_line: int | None
    value_lines: list[int | None]

    @property
    def where(self) -> str:
        return f"parameters.{self.section}.{self.key}"


@dataclass
class Axis:
    """Parameters that vary together: one grid parameter, or the zip group."""

    params: list[Parameter]

    def __len__(self) -> int:
        return len(self.params[0].values)


@dataclass
class Sweep:
    """A validated sweep file, ready to expand into points."""

    file: str
    spec: SweepFile
    located: Located
    base: Located
    axes: list[Axis]
    metrics: list[str]
    x: str
    plugin_path: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def params(self) -> list[Parameter]:
        return [p for axis in self.axes for p in axis.params]

    def line_of(self, *path: str | int) -> int | None:
        return self.located.line_of(tuple(path))


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; the points are checked by ``expand``."""
    located = load_yaml_file(path)
    file = located.file
    if not isinstance(located.data, dict):
        raise ConfigError(
            "the top level must be a mapping",
            file=file,
            line=1,
            expected="keys such as name, base, parameters, seeds, metrics",
        )
    check_known_keys(located, (), SweepFile)
    if isinstance(located.data.get("cluster"), dict):
        check_known_keys(located, ("cluster",), ClusterSpec)
    try:
        spec = SweepFile.model_validate(located.data)
    except ValidationError as exc:
        raise validation_to_config_error(
            exc, file=file, model=SweepFile, located=located
        ) from None
    folder = str(Path(file).resolve().parent)
    _import_plugins(spec.plugins, folder, located)
    base = _load_base(spec, located)
    axes = _axes(spec, located)
    params = [p for a in axes for p in a.params]
    metrics = [_check_metric(m, i, located) for i, m in enumerate(spec.metrics)]
    x = _check_x(spec.x, params, located)
    return Sweep(
        file=file,
        spec=spec,
        located=located,
        base=base,
        axes=axes,
        metrics=metrics,
        x=x,
        plugin_path=[folder],
    )


def import_plugins(names: list[str], search: list[str]) -> None:
    """Import plugin modules by name, from the Python path or ``search``.

    Workers call this too, with the same folders, so a plugin found next to
    the sweep file in the driver is found there by every worker. The folders
    go last on the path: a stray ``yaml.py`` beside a sweep file must not
    shadow the real module.
    """
    if not names:
        return
    for folder in search:
        if folder not in sys.path:
            sys.path.append(folder)
    for name in names:
        importlib.import_module(name)


def _import_plugins(names: list[str], folder: str, located: Located) -> None:
    for i, name in enumerate(names):
        try:
            import_plugins([name], [folder])
        except Exception as exc:  # an ImportError or the plugin's own bug
            raise ConfigError(
                f"cannot import plugin {name!r}: {type(exc).__name__}: {exc}",
                file=located.file,
                path=f"plugins[{i}]",
                line=located.line_of(("plugins", i)),
                expected="a module name importable from the Python path or "
                "the sweep file's folder",
            ) from None


def _load_base(spec: SweepFile, located: Located) -> Located:
    if isinstance(spec.base, str):
        target = Path(spec.base)
        if not target.is_absolute():
            target = Path(located.file).parent / target
        if not target.is_file():
            raise ConfigError(
                f"base workload {spec.base!r} not found (looked for {target})",
                file=located.file,
                path="base",
                line=located.line_of(("base",)),
                expected="a workload file path relative to the sweep file, "
                "or an inline workload mapping",
            )
        base = load_yaml_file(target)
    else:
        # an inline base keeps the sweep file's line numbers, so errors in
        # it point at the right line of the file the user is editing
        lines = {p[1:]: ln for p, ln in located.lines.items() if p[:1] == ("base",)}
        base = Located(data=copy.deepcopy(spec.base), file=located.file, lines=lines)
    if not isinstance(base.data, dict):
        raise ConfigError(
            "the base workload must be a mapping",
            file=base.file,
            line=1,
            expected="a workload file (see `simcore schema`)",
        )
    return base


def _axes(spec: SweepFile, located: Located) -> list[Axis]:
    grid = [_parameter("grid", k, v, located) for k, v in spec.parameters.grid.items()]
    zipped = [_parameter("zip", k, v, located) for k, v in spec.parameters.zip.items()]
    if not grid and not zipped:
        raise ConfigError(
            "nothing to sweep",
            file=located.file,
            path="parameters",
            line=located.line_of(("parameters",)),
            expected="at least one entry under parameters.grid or parameters.zip",
        )
    if zipped:
        first = zipped[0]
        for p in zipped[1:]:
            if len(p.values) != len(first.values):
                raise ConfigError(
                    f"zipped parameters must have equal lengths: {p.key} has "
                    f"{len(p.values)} values, {first.key} has {len(first.values)}",
                    file=located.file,
                    path=p.where,
                    line=p.key_line,
                )
    params = grid + zipped
    for i, a in enumerate(params):
        for b in params[:i]:
            short, long_ = sorted((a, b), key=lambda p: len(p.path))
            if long_.path[: len(short.path)] == short.path:
                same = a.path == b.path
                raise ConfigError(
                    f"{a.key} is swept twice"
                    if same
                    else f"{long_.key} is inside {short.key}, which is swept too",
                    file=located.file,
                    path=a.where,
                    line=a.key_line,
                    expected="each workload path swept once, in grid or in zip",
                )
    return [Axis([p]) for p in grid] + ([Axis(zipped)] if zipped else [])


def _parameter(section: str, key: str, raw: Any, located: Located) -> Parameter:
    ypath = ("parameters", section, key)
    file = located.file
    where = f"parameters.{section}.{key}"
    key_line = located.line_of(ypath)
    try:
        path = parse_set_path(key)
    except ValueError:
        raise ConfigError(
            f"{key!r} is not a workload path",
            file=file,
            path=where,
            line=key_line,
            expected="a dotted path such as machine.cpus or workloads[0].nr_pages",
        ) from None
    if path == ("seed",):
        raise ConfigError(
            "the seed is not a parameter: each point's seed comes from the sweep",
            file=file,
            path=where,
            line=key_line,
            expected="seed: ROOT and seeds: N at the top level of the sweep file",
        )
    if isinstance(raw, list):
        values = raw
        lines = [located.line_of(ypath + (i,)) for i in range(len(raw))]
    elif isinstance(raw, dict):
        unknown = [k for k in raw if k != "range"]
        if unknown:
            hint = difflib.get_close_matches(str(unknown[0]), ["range"], n=1)
            tip = "; did you mean 'range'?" if hint else ""
            raise ConfigError(
                f"unknown key {unknown[0]!r}{tip}",
                file=file,
                path=f"{where}.{unknown[0]}",
                line=located.line_of(ypath + (unknown[0],)),
                expected="a list of values or {range: {start, stop, step}}",
            )
        if isinstance(raw["range"], dict):
            check_known_keys(located, ypath + ("range",), RangeSpec)
        try:
            rng = RangeSpec.model_validate(raw["range"])
        except ValidationError as exc:
            raise validation_to_config_error(
                exc,
                file=file,
                model=RangeSpec,
                located=located,
                prefix=ypath + ("range",),
            ) from None
        try:
            values = rng.values()
        except ValueError as exc:
            raise ConfigError(
                str(exc), file=file, path=f"{where}.range", line=key_line
            ) from None
        lines = [located.line_of(ypath + ("range",))] * len(values)
    else:
        raise ConfigError(
            f"{key} needs a list of values, got {raw!r}",
            file=file,
            path=where,
            line=key_line,
            expected="a list such as [1, 2, 4] or {range: {start, stop, step}}",
        )
    if not values:
        raise ConfigError(
            f"{key} has no values",
            file=file,
            path=where,
            line=key_line,
            expected="at least one value",
        )
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        canon = json.dumps(v, sort_keys=True, default=str)
        if canon in seen:
            raise ConfigError(
                f"value {v!r} is listed twice (entries {seen[canon]} and {i})",
                file=file,
                path=f"{where}[{i}]",
                line=lines[i],
                expected="distinct values",
            )
        seen[canon] = i
    return Parameter(key, path, section, list(values), key_line, lines)


def _catalog_names() -> list[str]:
    from simcore.metrics.catalog import CATALOG

    return [m.pattern for m in CATALOG]


def _check_metric(name: str, index: int, located: Located) -> str:
    from simcore.metrics.catalog import CATALOG, lookup

    is_pattern = any(c in name for c in "*?[")
    if is_pattern:
        # a pattern is good if some catalog metric could match it, or if it
        # only narrows a catalog family (lock.*.wait_ns within lock.<name>...)
        examples = [
            m.pattern.replace("<name>", "x").replace("<op>", "x").replace("*", "x")
            for m in CATALOG
        ]
        probe = name.replace("*", "x").replace("?", "x")
        ok = lookup(probe) is not None or any(
            fnmatch.fnmatchcase(e, name) for e in examples
        )
    else:
        ok = lookup(name) is not None
    if ok:
        return name
    hint = difflib.get_close_matches(name, _catalog_names(), n=1, cutoff=0.6)
    tip = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(
        f"unknown metric {name!r}{tip}",
        file=located.file,
        path=f"metrics[{index}]",
        line=located.line_of(("metrics", index)),
        expected="a name from `simcore list metrics` (or a pattern like "
        "lock.*.wait_ns)",
    )


def _check_x(x: str | None, params: list[Parameter], located: Located) -> str:
    keys = [p.key for p in params]
    if x is None:
        return keys[0]
    try:
        want = parse_set_path(x)
    except ValueError:
        want = None
    for p in params:
        if p.path == want:
            return p.key
    hint = difflib.get_close_matches(x, keys, n=1, cutoff=0.5)
    tip = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(
        f"x = {x!r} is not a swept parameter{tip}",
        file=located.file,
        path="x",
        line=located.line_of(("x",)),
        expected="one of " + ", ".join(keys),
    )


def short_names(params: list[Parameter]) -> dict[str, str]:
    """Column labels: the last path part, or the whole path where two clash."""
    tails: dict[str, int] = {}
    for p in params:
        tail = str(p.path[-1]) if isinstance(p.path[-1], str) else p.key
        tails[tail] = tails.get(tail, 0) + 1
    out = {}
    for p in params:
        tail = str(p.path[-1]) if isinstance(p.path[-1], str) else p.key
        out[p.key] = tail if tails[tail] == 1 else format_path(p.path)
    return out
