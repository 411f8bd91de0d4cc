"""Criteria: quantities of published and simulated points, and acceptance."""

from __future__ import annotations

import pytest

from simcore.validate.criteria import CriterionError, Rule, crossing, judge, slope

PUB = {"a": {1.0: 1.0, 2.0: 4.0, 4.0: 10.0}, "b": {1.0: 2.0, 2.0: 3.0, 4.0: 5.0}}


def test_value_ratio_slope_crossing():
    assert Rule("value", series="a", at=2.0, factor=2).quantity_of(PUB) == 4.0
    assert Rule("ratio", num="a", den="b", at=4.0, factor=2).quantity_of(PUB) == 2.0
    assert slope({0.0: 1.0, 1.0: 3.0, 2.0: 5.0}) == pytest.approx(2.0)
    # a - b: -1 at x=1, +1 at x=2: crosses half way
    assert crossing(PUB["a"], PUB["b"]) == pytest.approx(1.5)


def test_no_crossing_is_an_error():
    with pytest.raises(CriterionError, match="do not cross"):
        crossing({1.0: 1.0, 2.0: 2.0}, {1.0: 5.0, 2.0: 6.0})


@pytest.mark.parametrize(
    ("rule", "sim", "ok"),
    [
        (Rule("value", series="a"), 1.5, True),
        (Rule("value", series="a"), 1 / 1.5, True),
        (Rule("value", series="a"), 1.51, False),
        (Rule("value", series="a"), 0.66, False),  # two-sided: too small fails
        (Rule("value", series="a"), 0.0187 / 0.695, False),  # right way, 37x off
        (Rule("value", series="a", factor=2), 0.5, True),
        (Rule("value", series="a", factor=2), 2.01, False),
    ],
)
def test_acceptance(rule, sim, ok):
    assert rule.accepts(sim, 1.0) is ok


def test_judge_fails_when_the_simulated_quantity_is_missing():
    rule = Rule("crossing", num="a", den="b", factor=2)
    v = judge(rule, PUB, {"a": {1.0: 1.0, 2.0: 2.0}, "b": {1.0: 5.0, 2.0: 6.0}})
    assert not v.passed and v.simulated is None and "cross" in v.reason
    assert v.published == pytest.approx(1.5)


def test_describe():
    r = Rule("ratio", num="a", den="b", at=1024.0, factor=2)
    assert r.describe() == "ratio at 1024 within x2"
    assert r.describe(has_x=False) == "ratio within x2"
    assert Rule("slope", series="a").describe() == "slope within x1.5"


def test_a_failure_says_how_far_off_it_is():
    v = judge(Rule("value", series="a"), {"a": {0.0: 0.695}}, {"a": {0.0: 0.0187}})
    assert not v.passed
    assert v.ratio == pytest.approx(0.0187 / 0.695)
    assert "outside [0.463333, 1.0425]" in v.reason
