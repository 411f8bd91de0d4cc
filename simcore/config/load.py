"""Load a workload file into a fully resolved configuration.

Resolution fills every default (hardware profile values, kernel preset
knobs, simulator settings) into one mapping, written to ``config.yaml`` in
the results folder, so that rerunning that file reproduces the run exactly
even if a profile or preset changes later.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simcore.config.errors import validation_to_config_error
from simcore.config.schema import StrategyRef, WorkloadFile, strategy_list
from simcore.context import find_capture
from simcore.errors import CaptureError, ConfigError
from simcore.kernel.presets import preset_values
from simcore.knobs import ARCH_OF, KNOBS, KernelKnobs, applies
from simcore.profile import (
    SHORTCUTS,
    HwProfile,
    apply_overrides,
    available_profiles,
    profile_path,
    values_only,
    with_units,
)
from simcore.strategies import get_strategy
from simcore.strategies.params import StrategyParams
from simcore.yamlsrc import Located, format_path, load_yaml_file, parse_set_path


@dataclass
class Resolved:
    """A validated workload with its machine and kernel fully resolved."""

    file: str
    cfg: WorkloadFile
    profile: HwProfile
    knobs: KernelKnobs  # the preset's knobs with the file's overrides, resolved
    cpus: int
    data: dict[str, Any]  # the resolved config as plain data (config.yaml)
    config_hash: str
    # capture file -> digest of its contents: part of the run's identity,
    # so an edited capture is a different run (and a new sweep point)
    captures: dict[str, str] = field(default_factory=dict)
    # capture file as opened -> "YAML path at file:line" that named it
    capture_refs: dict[str, str] = field(default_factory=dict)
    # strategy label -> its validated parameters
    strategy_params: dict[str, StrategyParams] = field(default_factory=dict)

    def strategy_ref(self, label: str) -> StrategyRef | None:
        """The strategy entry of that label (or name), if the workload has it."""
        return next((r for r in self.cfg.strategy if r.label == label), None)

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.data, sort_keys=False, default_flow_style=None, width=88
        )


def apply_set(located: Located, assignment: str) -> None:
    """``--set workloads[0].nr_pages=4``: a YAML scalar at a dotted path."""
    origin = f"--set {assignment}"
    key, sep, raw = assignment.partition("=")
    if not sep:
        raise ConfigError("missing '='", file=origin, expected="key.path=value")
    try:
        path = parse_set_path(key.strip())
    except ValueError:
        raise ConfigError(
            f"bad key path {key!r}", file=origin, expected="a path like machine.cpus"
        ) from None
    promote_strategy(located.data, path)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    cur = located.data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                raise ConfigError(
                    f"no list entry {format_path(path[: i + 1])}", file=origin
                )
            cur = cur[part]
        else:
            if not isinstance(cur, dict):
                raise ConfigError(
                    f"{format_path(path[:i])} is not a mapping", file=origin
                )
            cur = cur.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise ConfigError(f"no list entry {format_path(path)}", file=origin)
        cur[last] = value
    else:
        if not isinstance(cur, dict):
            raise ConfigError(f"{format_path(path[:-1])} is not a mapping", file=origin)
        cur[last] = value
    located.origins[path] = origin


def promote_strategy(data: Any, path: tuple) -> None:
    """Turn a plain strategy name into ``{name: NAME}`` where ``path`` goes
    inside it, so that ``--set strategy.params.pack_size=1M`` (or a sweep
    axis of that path) works on a file that names its strategy plainly."""
    if not isinstance(data, dict) or len(path) < 2:
        return
    key = path[0]
    if key not in ("strategy", "strategies"):
        return
    val = data.get(key)
    if isinstance(path[1], int):
        i = path[1]
        if len(path) > 2 and isinstance(val, list) and i < len(val):
            val[i] = {"name": val[i]} if isinstance(val[i], str) else val[i]
    elif isinstance(val, str) and "," not in val:
        data[key] = {"name": val.strip()}


def _strategy_params(
    cfg: WorkloadFile, located: Located, arch: str
) -> dict[str, StrategyParams]:
    """Each strategy's ``params`` checked against its own model; an error
    points at the parameter's line. A strategy that cannot exist on the
    machine's architecture is an error at its entry."""
    key = "strategies" if "strategies" in located.data else "strategy"
    raw = located.data.get(key)
    out = {}
    for i, ref in enumerate(cfg.strategy):
        cls = get_strategy(ref.name)
        where = (key, i) if isinstance(raw, list) else (key,)
        arches = getattr(cls, "arches", ("x86_64", "arm64"))
        if arch not in arches:
            raise ConfigError(
                f"strategy {ref.name} cannot run on {arch}: "
                f"{getattr(cls, 'arch_reason', 'not modelled there')}",
                file=located.origin_of(where) or located.file,
                path=".".join(str(p) for p in where),
                line=located.line_of(where),
                expected=f"a strategy of {arch} (`simcore list strategies`)",
            )
        model = getattr(cls, "Params", StrategyParams)
        try:
            out[str(ref.label)] = model.model_validate(ref.params)
        except ValidationError as exc:
            raise validation_to_config_error(
                exc,
                file=located.file,
                model=model,
                located=located,
                prefix=(*where, "params"),
            ) from None
    return out


def recorded_strategy(ref: StrategyRef, params: StrategyParams) -> str | dict:
    """A strategy as the resolved config records it: every parameter
    written out, a plain name for a strategy that has none."""
    values = params.model_dump(mode="json")
    if not values and ref.label == ref.name:
        return ref.name
    entry: dict[str, Any] = {"name": ref.name}
    if ref.label != ref.name:
        entry["label"] = ref.label
    if values:
        entry["params"] = values
    return entry


def _hashed_strategy(entry: Any) -> Any:
    """A recorded strategy as the config hash sees it: parameters at their
    defaults left out, so a run giving none keeps the identity (and stored
    sweep points) it had before its strategy had parameters."""
    if not isinstance(entry, dict) or "name" not in entry:
        return entry
    try:
        model = getattr(get_strategy(entry["name"]), "Params", StrategyParams)
        base = model().model_dump(mode="json")
    except (KeyError, ImportError, AttributeError):  # a strategy not loaded here
        return entry
    params = entry.get("params") or {}
    changed = {k: v for k, v in params.items() if base.get(k) != v}
    label = entry.get("label", entry["name"])
    if not changed and label == entry["name"]:
        return entry["name"]
    out: dict[str, Any] = {"name": entry["name"]}
    if label != entry["name"]:
        out["label"] = label
    if changed:
        out["params"] = changed
    return out


def _preset_knobs(name: str, arch: str) -> dict[str, Any]:
    """A preset's knobs on ``arch`` in their typed form, so that
    presets.yaml may write a value with units (``lazy_max_pages: {value:
    32MiB}``) and the resolved config records the number."""
    values = preset_values(name, arch)
    try:
        knobs = KernelKnobs.model_validate({**values, "preset": name})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        knob = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            err["msg"].removeprefix("Value error, "),
            file="simcore/kernel/presets.yaml",
            path=f'"{name}".{knob}.value',
            expected="a value of the knob's type (see the file's header)",
        ) from None
    return {k: getattr(knobs, k) for k in values}


def _overridden(exc: ValidationError, overrides: dict) -> tuple | None:
    """The override path a profile validation error falls under, if any."""
    loc = tuple(str(p) for p in exc.errors(include_url=False)[0]["loc"])
    node: Any = overrides
    for i, part in enumerate(loc):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
        if not isinstance(node, dict):
            return loc[: i + 1]
    return None


def _load_profile(machine: dict, located: Located) -> tuple[HwProfile, dict]:
    name = machine.get("profile", "skylake-sp")
    path = profile_path(str(name))
    line = located.line_of(("machine", "profile"))
    if not path.is_file():
        known = available_profiles()
        hint = difflib.get_close_matches(str(name), known, n=1)
        tip = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(
            f"unknown hardware profile {name!r}{tip}",
            file=located.origin_of(("machine", "profile")) or located.file,
            path="machine.profile",
            line=line,
            expected="one of " + ", ".join(known) + " or a path to a profile file",
        )
    prof = load_yaml_file(path)
    if not isinstance(prof.data, dict):
        raise ConfigError("a profile must be a mapping", file=str(path))
    prof.data = with_units(prof)
    overrides: dict[str, Any] = {}
    for key, val in machine.items():
        if key in ("profile", "cpus"):
            continue
        if key not in SHORTCUTS and key not in prof.data:
            names = ["profile", "cpus", *SHORTCUTS, *prof.data]
            hint = difflib.get_close_matches(str(key), names, n=1)
            tip = f"; did you mean {hint[0]!r}?" if hint else ""
            full = ("machine", key)
            raise ConfigError(
                f"unknown machine key {key!r}{tip}",
                file=located.origin_of(full) or located.file,
                path=format_path(full),
                line=located.line_of(full),
                expected="profile, cpus, sockets, or a hardware profile field",
            )
        if key in SHORTCUTS:
            group, field = SHORTCUTS[key]
            overrides.setdefault(group, {})[field] = val
        else:
            overrides[key] = val
    try:
        raw = apply_overrides(prof.data, overrides)
    except ConfigError as exc:
        rel = tuple(exc.path.split(".")) if exc.path else ()
        short = {v: k for k, v in SHORTCUTS.items()}.get(rel[:2])
        full = ("machine",) + ((short,) if short else rel)
        raise ConfigError(
            exc.message,
            file=located.origin_of(full) or located.file,
            path=format_path(full),
            line=located.line_of(full),
        ) from None
    try:
        profile = HwProfile.model_validate(raw)
    except ValidationError as exc:
        where = _overridden(exc, overrides)
        if where is not None:  # the workload's value is wrong: point at it
            short = {v: k for k, v in SHORTCUTS.items()}.get(where[:2])
            full = ("machine",) + ((short,) if short else where)
            raise ConfigError(
                exc.errors(include_url=False)[0]["msg"],
                file=located.origin_of(full) or located.file,
                path=format_path(full),
                line=located.line_of(full),
            ) from None
        err = validation_to_config_error(exc, file=str(path), model=HwProfile)
        if overrides:
            err.message += (
                " (after applying the machine overrides of " + located.file + ")"
            )
        raise err from None
    return profile, raw


def resolve(located: Located) -> Resolved:
    if not isinstance(located.data, dict):
        raise ConfigError(
            "the top level must be a mapping",
            file=located.file,
            line=1,
            expected="keys such as name, duration, machine, workloads",
        )
    if "strategy" in located.data and "strategies" in located.data:
        where = ("strategies",)
        raise ConfigError(
            "give strategy or strategies, not both",
            file=located.origin_of(where) or located.file,
            path="strategies",
            line=located.line_of(where),
            expected="strategy: a name, a mapping {name, params} or a list; "
            "or strategies: a list",
        )
    try:
        cfg = WorkloadFile.model_validate(located.data)
    except ValidationError as exc:
        raise validation_to_config_error(
            exc, file=located.file, model=WorkloadFile, located=located
        ) from None
    machine = dict(located.data.get("machine") or {})
    profile, raw_profile = _load_profile(machine, located)
    total = profile.total_cpus
    cpus = cfg.machine.cpus or total
    if cpus > total:
        raise ConfigError(
            f"machine.cpus = {cpus} but the profile has only {total} hardware threads",
            file=located.origin_of(("machine", "cpus")) or located.file,
            path="machine.cpus",
            line=located.line_of(("machine", "cpus")),
            expected=f"at most {total}, or raise machine.sockets",
        )
    arch = profile.arch
    kernel = _preset_knobs(cfg.kernel.preset, arch)
    for knob in KNOBS:
        val = getattr(cfg.kernel, knob)
        if val is None:
            continue
        if not applies(knob, arch):
            raise ConfigError(
                f"kernel.{knob} exists on {ARCH_OF[knob]} only, and profile "
                f"{profile.name} is {arch}",
                file=located.origin_of(("kernel", knob)) or located.file,
                path=f"kernel.{knob}",
                line=located.line_of(("kernel", knob)),
                expected=f"no kernel.{knob} with an {arch} profile",
            )
        kernel[knob] = val
    kernel["preset"] = cfg.kernel.preset
    if kernel["vmap_nodes"] == 0:
        kernel["vmap_nodes"] = min(max(cpus, 1), 128)
    if kernel["lazy_max_pages"] == 0:
        # lazy_max_pages(): fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)
        kernel["lazy_max_pages"] = cpus.bit_length() * ((32 << 20) >> 12)

    strategy_params = _strategy_params(cfg, located, arch)
    data = cfg.model_dump(mode="json")
    data["strategy"] = [
        recorded_strategy(r, strategy_params[str(r.label)]) for r in cfg.strategy
    ]
    mach = values_only(raw_profile)
    for k in ("name", "description"):
        mach.pop(k, None)
    data["machine"] = {
        "profile": str(machine.get("profile", "skylake-sp")),
        "cpus": cpus,
    }
    data["machine"].update(mach)
    # a knob of the other architecture is not part of this machine's kernel
    data["kernel"] = {
        "preset": kernel["preset"],
        **{k: kernel[k] for k in KNOBS if applies(k, arch)},
    }
    captures = capture_digests(cfg, located.file)
    return Resolved(
        file=located.file,
        cfg=cfg,
        profile=profile,
        knobs=KernelKnobs(**kernel),
        cpus=cpus,
        data=data,
        config_hash=config_hash(data, captures),
        captures=captures,
        capture_refs=capture_origins(cfg, located),
        strategy_params=strategy_params,
    )


def config_hash(data: dict[str, Any], captures: dict[str, str] | None = None) -> str:
    """Short SHA-256 of the resolved config as canonical JSON, and of the
    contents of the captures it reads: the run's identity in footers and the
    key a sweep stores each point under. Strategy parameters at their
    defaults are left out (``_hashed_strategy``)."""
    if isinstance(data.get("strategy"), list):
        data = {**data, "strategy": [_hashed_strategy(e) for e in data["strategy"]]}
    kern = data.get("kernel")
    if isinstance(kern, dict):
        # host captures not named keep the identity runs had before the
        # knobs existed (buddyinfo predates them and stays)
        unset = [k for k in KERNEL_CAPTURES[1:] if k in kern and kern[k] is None]
        if unset:
            data = {**data, "kernel": {k: v for k, v in kern.items() if k not in unset}}
    doc: Any = {"config": data, "captures": captures} if captures else data
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


# kernel knobs naming captures of the host the run starts from
KERNEL_CAPTURES = ("buddyinfo", "meminfo", "vmallocinfo", "vmstat")


def capture_fields(cfg: WorkloadFile) -> list[tuple[tuple, str]]:
    """(YAML path, file name) of every capture the workload names: the
    kernel's and the fields each generator lists in its ``CAPTURES``."""
    out: list[tuple[tuple, str]] = []
    for knob in KERNEL_CAPTURES:
        name = getattr(cfg.kernel, knob)
        if name:
            out.append((("kernel", knob), name))
    for i, w in enumerate(cfg.workloads):
        for dotted in getattr(w, "CAPTURES", ()):
            node: Any = w
            for part in dotted.split("."):
                node = getattr(node, part, None)
            if isinstance(node, str):
                out.append((("workloads", i, *dotted.split(".")), node))
    return out


def capture_names(cfg: WorkloadFile) -> list[str]:
    """Every capture file the workload names."""
    return [name for _, name in capture_fields(cfg)]


def capture_origins(cfg: WorkloadFile, located: Located) -> dict[str, str]:
    """Each capture as the run will open it -> the workload line that named
    it, so that an error in the capture can point back at that line."""
    out = {}
    for path, name in capture_fields(cfg):
        origin = located.origin_of(path)
        if origin is None:
            line = located.line_of(path)
            origin = located.file + (f":{line}" if line else "")
        where = str(find_capture(name, Path(located.file).parent))
        out[where] = f"{format_path(path)} at {origin}"
    return out


def naming_captures(build: Callable) -> Callable:
    """Decorate a builder called as ``build(self, resolved, ...)``: a
    CaptureError raised while it reads the workload's captures also names
    the workload key and line that pointed at the capture."""

    @functools.wraps(build)
    def wrapper(self: Any, resolved: Resolved, *args: Any, **kw: Any) -> Any:
        try:
            return build(self, resolved, *args, **kw)
        except CaptureError as exc:
            if exc.origin is None and exc.file in resolved.capture_refs:
                exc.origin = resolved.capture_refs[exc.file]
            raise

    return wrapper


def capture_digests(cfg: WorkloadFile, file: str) -> dict[str, str]:
    """SHA-256 (16 hex digits) of every capture the workload names that
    exists, found as the run will find it: next to the workload file first,
    then from the current directory (a missing one fails at run time with
    its own error)."""
    out = {}
    for name in capture_names(cfg):
        p = find_capture(name, Path(file).parent)
        if p.is_file():
            out[name] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


def load_workload(
    path: str | Path,
    *,
    sets: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    strategies: list[str] | None = None,
) -> Resolved:
    """Read, override, validate and resolve a workload file."""
    located = load_yaml_file(path)
    located.data = copy.deepcopy(located.data)
    if isinstance(located.data, dict):
        for s in sets:
            apply_set(located, s)
        if seed is not None:
            apply_set(located, f"seed={seed}")
            located.origins[("seed",)] = "--seed"
        if strategies:
            # a strategy the file configures keeps its params and label
            given: dict[str, Any] = {}
            for key in ("strategy", "strategies"):
                for e in strategy_list(located.data.pop(key, None)) or []:
                    if isinstance(e, dict) and isinstance(e.get("name"), str):
                        given[str(e.get("label") or e["name"])] = e
            located.data["strategy"] = [given.get(s, s) for s in strategies]
            located.origins[("strategy",)] = "--strategy"
    return resolve(located)


__all__ = ["Resolved", "apply_set", "load_workload", "resolve"]
