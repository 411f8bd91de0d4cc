"""The README's table of kernel eras is what `simcore list presets` prints,
so it cannot drift from simcore/kernel/presets.yaml."""

from __future__ import annotations

import re
from pathlib import Path

from simcore.kernel.presets import KNOBS, era_changes, era_table, presets, release_key

README = Path(__file__).parents[1] / "README.md"
# a source names a commit by its 12-hex abbreviated id, or says why it has
# none ("no commit: machine state ...", "no commit id: not found ...")
CITES = re.compile(r"\b[0-9a-f]{12}\b|\bno commit\b")


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


def test_every_knob_cites_a_commit_or_says_why_not():
    for era, knobs in presets().items():
        for name, entry in knobs.items():
            assert CITES.search(entry["source"]), (era, name, entry["source"])
            if "arm64" in entry:  # a value arm64 shipped of its own
                arm = entry["arm64"]
                assert CITES.search(arm["source"]), (era, name, arm["source"])


def test_every_change_between_neighbouring_presets_names_its_commit():
    changes = era_changes()
    assert changes, "the presets should differ somewhere"
    for knob, older, newer, source in changes:
        assert CITES.search(source), (knob, older, newer, source)
        # the change line of `simcore list presets` carries that source
        assert f"- `{knob}` {older} -> {newer}: {source}" in era_table()


def test_presets_are_releases_in_order_then_latest():
    names = list(presets())
    assert names[-1] == "latest"
    assert len(names) >= 10, "at least nine releases plus latest"
    assert names == sorted(names, key=release_key), names
    assert len(set(map(release_key, names))) == len(names)
