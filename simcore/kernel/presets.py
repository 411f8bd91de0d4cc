"""Kernel-era presets (``kernel.preset``) and their sourced knobs.

A knob's entry in presets.yaml is ``{value, source}``. Knobs of one
architecture only (:data:`simcore.knobs.ARCH_OF`) resolve to None on the
other; the rest mean the same on both.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from simcore.knobs import ARCH_OF, KNOBS, applies

_FILE = Path(__file__).with_name("presets.yaml")


@cache
def presets() -> dict[str, dict[str, dict]]:
    with _FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def preset_values(name: str, arch: str = "x86_64") -> dict[str, object]:
    """The preset's knob values on ``arch`` (None: not on that arch)."""
    return {
        k: v["value"] if applies(k, arch) else None for k, v in presets()[name].items()
    }


def release_key(name: str) -> tuple[int, ...]:
    """Orders preset names as releases: "5.4" < "5.10" < "6.1" < latest."""
    if name == "latest":
        return (10**6,)
    return tuple(int(part) for part in name.split("."))


def era_changes() -> list[tuple[str, str, str, str]]:
    """(knob, older preset, newer preset, source of the newer value) for
    every knob whose value differs between neighbouring presets."""
    eras = presets()
    names = list(eras)
    return [
        (k, prev, cur, str(eras[cur][k]["source"]))
        for k in KNOBS
        for prev, cur in zip(names, names[1:], strict=False)
        if eras[prev][k]["value"] != eras[cur][k]["value"]
    ]


def era_table() -> str:
    """Markdown table: one row per knob, one column per preset, the
    architectures a knob exists on, and below it the source (the commit)
    of each change between neighbouring eras."""
    names = list(presets())
    out = ["| knob | arch | " + " | ".join(names) + " |"]
    out.append("| --- | --- |" + " --- |" * len(names))
    for k in KNOBS:
        arch = ARCH_OF.get(k, "both")
        cells = [str(presets()[e][k]["value"]) for e in names]
        out.append(f"| `{k}` | {arch} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "`arch` is where a knob exists: a knob of one architecture is left "
        "out of the other's resolved config and may not be set there."
    )
    out.append("")
    out.append("Where a knob changes between neighbouring presets:")
    out.append("")
    out += [f"- `{k}` {prev} -> {cur}: {src}" for k, prev, cur, src in era_changes()]
    return "\n".join(out) + "\n"
