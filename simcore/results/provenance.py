"""The sourced values of hardware profiles and kernel presets.

Every value in ``hw_profiles/*.yaml`` and ``simcore/kernel/presets.yaml``
carries its source, a confidence mark (profiles) and, under ``fitted_to``,
the validation cases or publications it was chosen from. The HTML report
lists them beside the values a run used; ``simcore validate`` decides from
them which cases are independent (:mod:`simcore.validate.provenance`).
Reading only: nothing here runs a simulation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from simcore.kernel.presets import presets
from simcore.profile import profile_path
from simcore.yamlsrc import load_yaml_file

_META = ("source", "confidence", "fitted_to")


@dataclass(frozen=True)
class SourcedValue:
    where: str  # "profile skylake-sp: flush.ipi_deliver_median_ns", "preset 6.1: ..."
    source: str
    fitted_to: tuple[str, ...]
    value: object = None
    confidence: str = ""  # verified, secondary, recalled, estimate; "" in presets

    @property
    def path(self) -> str:
        """The dotted path after the profile or preset name."""
        return self.where.split(": ", 1)[1]


def _walk(node, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict]]:
    """Every mapping that carries a source: a ``value`` with its source, or
    an entry of a TLB array (its fields are the value)."""
    if isinstance(node, dict):
        if "source" in node:
            yield path, node
            return
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))


def _value(node: dict) -> object:
    if "value" in node:
        return node["value"]
    return {k: v for k, v in node.items() if k not in _META}


@cache
def profile_values(name: str) -> tuple[SourcedValue, ...]:
    raw = load_yaml_file(profile_path(name)).data
    return tuple(
        SourcedValue(
            f"profile {name}: {'.'.join(path)}",
            str(node["source"]),
            tuple(node.get("fitted_to") or ()),
            _value(node),
            str(node.get("confidence", "")),
        )
        for path, node in _walk(raw, ())
    )


@cache
def preset_sourced(name: str) -> tuple[SourcedValue, ...]:
    """Every knob of the preset with its source; a knob's arm64 value of
    its own (``arm64:`` in presets.yaml) as ``knob (arm64)``."""
    out = []
    for knob, entry in presets()[name].items():
        out.append(_sourced(f"preset {name}: {knob}", entry))
        if "arm64" in entry:
            out.append(_sourced(f"preset {name}: {knob} (arm64)", entry["arm64"]))
    return tuple(out)


def _sourced(where: str, entry: dict) -> SourcedValue:
    return SourcedValue(
        where,
        str(entry.get("source", "")),
        tuple(entry.get("fitted_to") or ()),
        entry.get("value"),
        str(entry.get("confidence", "")),
    )
