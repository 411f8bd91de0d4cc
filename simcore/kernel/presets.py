"""Kernel-era presets (``kernel.preset``) and their sourced knobs."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

_FILE = Path(__file__).with_name("presets.yaml")
KNOBS = (
    "vmap_locking",
    "vmap_nodes",
    "lazy_max_pages",
    "page_alloc",
    "drain_in_workqueue",
    "direct_map_page",
    "cpa_collapse",
    "cpa_nx_alias",
    "cpa_rox",
    "fragmentation",
    "buddyinfo",
)


@cache
def presets() -> dict[str, dict[str, dict]]:
    with _FILE.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def preset_values(name: str) -> dict[str, object]:
    return {k: v["value"] for k, v in presets()[name].items()}
