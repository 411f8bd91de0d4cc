"""The table fits 80 columns whatever the names, numbers and reasons."""

from __future__ import annotations

from types import SimpleNamespace

from simcore.validate.criteria import Rule, Verdict
from simcore.validate.runner import CaseResult
from simcore.validate.table import WIDTH, num, render_table


def _result(name, pub, sim, passed, gap=None, error=None):
    spec = SimpleNamespace(known_gap=gap)
    case = SimpleNamespace(
        name=name,
        spec=spec,
        has_x=True,
        rule=Rule("ratio", num="a", den="b", at=123456.0, band=(0.000123, 98765.4)),
    )
    verdict = None if error else Verdict(passed, pub, sim)
    return CaseResult(case=case, verdict=verdict, error=error)


def test_every_line_fits():
    results = [
        _result("a-very-long-case-name-beyond-the-column", 123456789.0, 1e-9, True),
        _result("gap-case", 5.51, 2.12, False, gap="word " * 80),
        _result("broken", None, None, False, error="KeyError: " + "x" * 200),
    ]
    text = render_table(results, quick=True)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert "1 pass, 1 known gap, 0 fail, 1 error" in text
    assert any(line.startswith("gap-case") and line.endswith("gap") for line in lines)


def test_numbers_are_short():
    for v in (0.000123, 0.178, 5.51, 98.0, 1417.4, 45000.0, 4939048.0, -3.2e7):
        assert len(num(v)) <= 9
    assert num(None) == "-"
