"""Every shipped hardware profile loads, validates and sources every value."""

import pytest
import yaml

from simcore.profile import PROFILE_DIR, HwProfile, available_profiles

META = {"source", "confidence", "name", "description", "arch", "sizes"}
PROFILES = available_profiles()


def test_the_issue_list_is_shipped():
    for name in [
        "skylake-sp",
        "icelake-sp",
        "sapphire-rapids",
        "zen3-milan",
        "zen4-genoa",
        "neoverse-n1",
        "neoverse-v2",
    ]:
        assert name in PROFILES


def _unsourced(node, path=()):
    """Paths of scalars that sit in a mapping without source/confidence."""
    bad = []
    if isinstance(node, dict):
        scalars = [
            k
            for k, v in node.items()
            if k not in META and not isinstance(v, (dict, list))
        ]
        if scalars and path and not {"source", "confidence"} <= set(node):
            bad.append(".".join(map(str, path)))
        if "source" in node and not str(node["source"]).strip():
            bad.append(".".join(map(str, path)) + " (empty source)")
        for k, v in node.items():
            bad += _unsourced(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            bad += _unsourced(v, path + (i,))
    return bad


@pytest.mark.parametrize("name", PROFILES)
def test_profile_valid_and_sourced(name):
    raw = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    prof = HwProfile.model_validate(raw)
    assert prof.name == name
    assert _unsourced(raw) == []
    assert prof.total_cpus >= 1
    for level in (prof.tlb.itlb, prof.tlb.dtlb, prof.tlb.stlb):
        for arr in level:
            assert arr.entries % arr.ways == 0, (name, arr)


def test_unsourced_value_is_caught():
    assert _unsourced({"flush": {"invlpg_cycles": {"value": 1}}}) == [
        "flush.invlpg_cycles"
    ]


@pytest.mark.parametrize("name", PROFILES)
def test_tlb_sharing_and_levels_stated(name):
    raw = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    prof = HwProfile.model_validate(raw)
    t = prof.tlb
    arrays = [a for lv in (t.itlb, t.itlb2, t.dtlb, t.stlb) for a in lv]
    assert all(a.sharing.source.strip() for a in arrays)
    if prof.topology.threads_per_core.value == 1:
        assert {a.sharing.value for a in arrays} <= {"private"} or name == "small-test"
    # AMD Zen: a second-level iTLB ahead of the walker; nobody else has one
    assert bool(t.itlb2) == name.startswith("zen")
    assert prof.walk.levels.value <= prof.walk.max_levels.value
