from __future__ import annotations

import shutil
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "metrics.json").is_file())


@pytest.fixture
def case_copy(tmp_path: Path):
    """A writable copy of a golden results folder (reports redraw in place)."""

    def _copy(case: str, name: str | None = None) -> Path:
        dst = tmp_path / (name or case)
        shutil.copytree(GOLDEN / case, dst)
        return dst

    return _copy
