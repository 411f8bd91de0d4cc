"""Kernel-era presets (``kernel.preset``) and their sourced knobs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from simcore.knobs import KNOBS

_FILE = Path(__file__).with_name("presets.yaml")


@cache
def presets() -> dict[str, dict[str, dict]]:
    with _FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def preset_values(name: str) -> dict[str, object]:
    return {k: v["value"] for k, v in presets()[name].items()}


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
    """Markdown table: one row per knob, one column per preset, and below
    it the source (the commit) of each change between neighbouring eras."""
    eras = presets()
    names = list(eras)
    out = ["| knob | " + " | ".join(names) + " |"]
    out.append("| --- |" + " --- |" * len(names))
    for k in KNOBS:
        cells = [str(eras[e][k]["value"]) for e in names]
        out.append(f"| `{k}` | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Where a knob changes between neighbouring presets:")
    out.append("")
    out += [f"- `{k}` {prev} -> {cur}: {src}" for k, prev, cur, src in era_changes()]
    return "\n".join(out) + "\n"
