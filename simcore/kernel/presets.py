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


def era_table() -> str:
    """Markdown table: one row per knob, one column per preset, and below
    it the source of each change between neighbouring eras."""
    eras = presets()
    names = list(eras)
    knobs = [k for k in KNOBS if all(k in eras[e] for e in names)]
    out = ["| knob | " + " | ".join(names) + " |"]
    out.append("| --- |" + " --- |" * len(names))
    for k in knobs:
        cells = [str(eras[e][k]["value"]) for e in names]
        out.append(f"| `{k}` | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Where a knob changes between neighbouring presets:")
    out.append("")
    for k in knobs:
        for prev, cur in zip(names, names[1:], strict=False):
            if eras[prev][k]["value"] != eras[cur][k]["value"]:
                out.append(f"- `{k}` {prev} -> {cur}: {eras[cur][k]['source']}")
    return "\n".join(out) + "\n"
