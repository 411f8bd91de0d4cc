"""The README's table of kernel eras is what `simcore list presets` prints,
so it cannot drift from simcore/kernel/presets.yaml."""

from __future__ import annotations

from pathlib import Path

from simcore.kernel.presets import KNOBS, era_table, presets

README = Path(__file__).parents[1] / "README.md"


def test_readme_carries_the_current_era_table():
    assert era_table() in README.read_text(encoding="utf-8"), (
        "regenerate the README's 'Kernel eras' table with "
        "`python -m simcore list presets`"
    )


def test_every_era_sets_every_knob_with_a_source():
    for era, knobs in presets().items():
        assert set(knobs) == set(KNOBS), era
        for name, entry in knobs.items():
            assert entry.get("source"), (era, name)
