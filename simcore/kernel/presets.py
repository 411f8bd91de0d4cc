"""Kernel-era presets (``kernel.preset``) and their sourced knobs.

A knob's entry in presets.yaml is ``{value, source}``; where a release
shipped a different value on arm64 the entry carries ``arm64: {value,
source}`` beside them. Knobs of one architecture only
(:data:`simcore.knobs.ARCH_OF`) resolve to None on the other.
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


def knob_entry(name: str, knob: str, arch: str = "x86_64") -> dict | None:
    """``{value, source}`` of ``knob`` in preset ``name`` on ``arch``; None
    where the knob does not exist there."""
    if not applies(knob, arch):
        return None
    entry = presets()[name][knob]
    return entry.get(arch, entry)


def preset_values(name: str, arch: str = "x86_64") -> dict[str, object]:
    """The preset's knob values on ``arch`` (None: not on that arch)."""
    out = {}
    for k in presets()[name]:
        entry = knob_entry(name, k, arch)
        out[k] = None if entry is None else entry["value"]
    return out


def release_key(name: str) -> tuple[int, ...]:
    """Orders preset names as releases: "5.4" < "5.10" < "6.1" < latest."""
    if name == "latest":
        return (10**6,)
    return tuple(int(part) for part in name.split("."))


def era_changes() -> list[tuple[str, str, str, str]]:
    """(knob, older preset, newer preset, source of the newer value) for
    every knob whose value differs between neighbouring presets; a change
    of a knob's arm64 value of its own is listed as ``knob (arm64)``."""
    eras = presets()
    names = list(eras)
    out = []
    for k in KNOBS:
        split = any("arm64" in eras[n][k] for n in names)
        for arch in ("x86_64", "arm64") if split else (ARCH_OF.get(k, "x86_64"),):
            label = f"{k} ({arch})" if split and arch == "arm64" else k
            for prev, cur in zip(names, names[1:], strict=False):
                old, new = knob_entry(prev, k, arch), knob_entry(cur, k, arch)
                if old["value"] != new["value"]:
                    out.append((label, prev, cur, str(new["source"])))
    return out


def _cell(name: str, k: str) -> str:
    entry = presets()[name][k]
    arm = entry.get("arm64")
    if arm is None or arm["value"] == entry["value"]:
        return str(entry["value"])
    return f"{entry['value']} / arm64 {arm['value']}"


def era_table() -> str:
    """Markdown table: one row per knob, one column per preset, the
    architectures a knob exists on, and below it the source (the commit)
    of each change between neighbouring eras."""
    names = list(presets())
    out = ["| knob | arch | " + " | ".join(names) + " |"]
    out.append("| --- | --- |" + " --- |" * len(names))
    for k in KNOBS:
        arch = ARCH_OF.get(k, "both")
        cells = [_cell(e, k) for e in names]
        out.append(f"| `{k}` | {arch} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "`arch` is where a knob exists: a knob of one architecture is left "
        "out of the other's resolved config and may not be set there. A "
        "cell `a / arm64 b` is a release that shipped b on arm64."
    )
    out.append("")
    out.append("Where a knob changes between neighbouring presets:")
    out.append("")
    out += [f"- `{k}` {prev} -> {cur}: {src}" for k, prev, cur, src in era_changes()]
    return "\n".join(out) + "\n"
