"""Load a workload file into a fully resolved configuration.

Resolution fills every default (hardware profile values, kernel preset
knobs, simulator settings) into one mapping, written to ``config.yaml`` in
the results folder, so that rerunning that file reproduces the run exactly
even if a profile or preset changes later.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simcore.config.errors import validation_to_config_error
from simcore.config.schema import WorkloadFile
from simcore.context import find_capture
from simcore.errors import ConfigError
from simcore.kernel.presets import preset_values
from simcore.knobs import KNOBS, KernelKnobs
from simcore.profile import (
    SHORTCUTS,
    HwProfile,
    apply_overrides,
    available_profiles,
    profile_path,
    values_only,
)
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
    kernel = preset_values(cfg.kernel.preset)
    for knob in KNOBS:
        val = getattr(cfg.kernel, knob)
        if val is not None:
            kernel[knob] = val
    kernel["preset"] = cfg.kernel.preset
    if kernel["vmap_nodes"] == 0:
        kernel["vmap_nodes"] = min(max(cpus, 1), 128)
    if kernel["lazy_max_pages"] == 0:
        # lazy_max_pages(): fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)
        kernel["lazy_max_pages"] = cpus.bit_length() * ((32 << 20) >> 12)

    data = cfg.model_dump(mode="json")
    mach = values_only(raw_profile)
    for k in ("name", "description"):
        mach.pop(k, None)
    data["machine"] = {
        "profile": str(machine.get("profile", "skylake-sp")),
        "cpus": cpus,
    }
    data["machine"].update(mach)
    data["kernel"] = {"preset": kernel["preset"], **{k: kernel[k] for k in KNOBS}}
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
    )


def config_hash(data: dict[str, Any], captures: dict[str, str] | None = None) -> str:
    """Short SHA-256 of the resolved config as canonical JSON, and of the
    contents of the captures it reads: the run's identity in footers and the
    key a sweep stores each point under."""
    doc: Any = {"config": data, "captures": captures} if captures else data
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def capture_names(cfg: WorkloadFile) -> list[str]:
    """Every capture file the workload names (kernel.buddyinfo and the
    fields each generator lists in its ``CAPTURES``)."""
    names = [cfg.kernel.buddyinfo] if cfg.kernel.buddyinfo else []
    for w in cfg.workloads:
        for dotted in getattr(w, "CAPTURES", ()):
            node: Any = w
            for part in dotted.split("."):
                node = getattr(node, part, None)
            if isinstance(node, str):
                names.append(node)
    return names


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
            located.data["strategy"] = list(strategies)
            located.origins[("strategy",)] = "--strategy"
    return resolve(located)


__all__ = ["Resolved", "apply_set", "load_workload", "resolve"]
