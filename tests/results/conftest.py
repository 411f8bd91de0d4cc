from __future__ import annotations

import shutil
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "metrics.json").is_file())
# what a results folder's config.yaml gives a summary's title and footer
META = {
    "name": "t",
    "profile": "skylake-sp",
    "cpus": 8,
    "preset": "6.9",
    "duration": "10ms",
}


def metrics_doc(strategies: dict, **extra) -> dict:
    """A metrics.json document of these strategies' metrics."""
    return {
        "simcore_version": "0.1.0",
        "seed": 1,
        "config_hash": "0123456789ab",
        "strategies": strategies,
        **extra,
    }


@pytest.fixture
def case_copy(tmp_path: Path):
    """A writable copy of a golden results folder (reports redraw in place)."""

    def _copy(case: str, name: str | None = None) -> Path:
        dst = tmp_path / (name or case)
        shutil.copytree(GOLDEN / case, dst)
        return dst

    return _copy
