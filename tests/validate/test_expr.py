"""The measure expression: arithmetic over metrics, nothing else."""

from __future__ import annotations

import pytest

from simcore.validate.expr import Expr, ExprError, MissingMetric


def test_evaluates_metrics_names_and_functions():
    e = Expr("duration_ns * x / m('loops') / 1000 + max(1, 2) - -1")
    assert e.metrics() == ["loops"]
    got = e.evaluate({"loops": 100.0}, {"x": 4.0, "duration_ns": 1e6})
    assert got == pytest.approx(1e6 * 4 / 100 / 1000 + 2 + 1)


def test_folded_yaml_line_breaks_are_spaces():
    assert Expr("(m('a')\n + m('b'))\n * 2").evaluate({"a": 1, "b": 2}, {}) == 6


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "m('a').real",
        "open('f')",
        "y + 1",
        "m(a)",
        "[1, 2]",
        "1 if x else 2",
        "m('a') // 2",
        "True + 1",
    ],
)
def test_rejects_everything_else(text):
    with pytest.raises(ExprError):
        Expr(text)


def test_missing_metric_and_division_by_zero():
    with pytest.raises(MissingMetric, match="no metric 'b'"):
        Expr("m('b')").evaluate({}, {})
    with pytest.raises(ExprError, match="division by zero"):
        Expr("1 / m('a')").evaluate({"a": 0.0}, {})
