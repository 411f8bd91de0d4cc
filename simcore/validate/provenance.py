"""Provenance: which profile and preset values a case runs on were fitted to it.

Every sourced value in ``hw_profiles/*.yaml`` and ``simcore/kernel/presets.yaml``
may name, under ``fitted_to``, the validation cases (by name) or the
publications (by Message-ID or commit) it was chosen or derived from. A case
depends on every value of the profiles and presets its runs resolve to; it is
**independent** when none of those values names the case or its source.
That is conservative on purpose: a value fitted to a case's publication
taints the case even if the case's measure hardly reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from simcore.kernel.presets import presets
from simcore.profile import available_profiles, profile_path
from simcore.validate.spec import Case
from simcore.yamlsrc import load_yaml_file


@dataclass(frozen=True)
class SourcedValue:
    where: str  # "profile skylake-sp: flush.ipi_deliver_median_ns", "preset 6.1: ..."
    source: str
    fitted_to: tuple[str, ...]
    value: object = None


def _walk(node, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict]]:
    if isinstance(node, dict):
        if "value" in node and "source" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))


@cache
def profile_values(name: str) -> tuple[SourcedValue, ...]:
    raw = load_yaml_file(profile_path(name)).data
    return tuple(
        SourcedValue(
            f"profile {name}: {'.'.join(path)}",
            str(node["source"]),
            tuple(node.get("fitted_to") or ()),
            node["value"],
        )
        for path, node in _walk(raw, ())
    )


@cache
def preset_sourced(name: str) -> tuple[SourcedValue, ...]:
    return tuple(
        SourcedValue(
            f"preset {name}: {knob}",
            str(entry.get("source", "")),
            tuple(entry.get("fitted_to") or ()),
            entry.get("value"),
        )
        for knob, entry in presets()[name].items()
    )


def all_values() -> list[SourcedValue]:
    out: list[SourcedValue] = []
    for name in available_profiles():
        out += profile_values(name)
    for name in presets():
        out += preset_sourced(name)
    return out


def case_values(case: Case) -> list[SourcedValue]:
    """Every sourced value the case's runs resolve to."""
    profiles = {r.resolved.data["machine"]["profile"] for r in case.runs}
    eras = {r.resolved.knobs.preset for r in case.runs}
    out: list[SourcedValue] = []
    for p in sorted(profiles):
        out += profile_values(p)
    for e in sorted(eras):
        out += preset_sourced(e)
    return out


def fitted_values(case: Case) -> list[str]:
    """Where the values fitted to this case or to its source sit."""
    keys = {case.name, case.spec.source.ref}
    own = [f"case {case.name}: {text}" for text in case.spec.fitted]
    return own + [v.where for v in case_values(case) if keys & set(v.fitted_to)]
