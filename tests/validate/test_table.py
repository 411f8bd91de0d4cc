"""The table fits 80 columns whatever the names, numbers and reasons."""

from __future__ import annotations

from types import SimpleNamespace

from simcore.validate.criteria import Rule, Verdict
from simcore.validate.runner import CaseResult
from simcore.validate.table import (
    WIDTH,
    num,
    render_json,
    render_markdown,
    render_table,
)


def _result(name, pub, sim, passed, mechanism=None, error=None, fitted=()):
    spec = SimpleNamespace(
        mechanism=mechanism,
        source=SimpleNamespace(
            ref="msg@example.org", model_dump=lambda **kw: {"ref": "msg@example.org"}
        ),
    )
    case = SimpleNamespace(
        name=name,
        spec=spec,
        has_x=True,
        rule=Rule("ratio", num="a", den="b", at=123456.0, factor=2),
    )
    reason = "" if passed else "out of its band"
    verdict = None if error else Verdict(passed, pub, sim, reason)
    return CaseResult(case=case, verdict=verdict, error=error, fitted=list(fitted))


def test_every_line_fits():
    results = [
        _result("a-very-long-case-name-beyond-the-column", 123456789.0, 1e-9, True),
        _result("failing-case", 5.51, 2.12, False, mechanism="word " * 80),
        _result("broken", None, None, False, error="KeyError: " + "x" * 200),
        _result("fitted", 1.0, 1.1, True, fitted=["profile p: flush.x"]),
    ]
    text = render_table(results, quick=True)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert "2 pass (1 independent), 1 fail, 1 error of 4" in text
    assert any(line.startswith("failing-case") and "fail" in line for line in lines)
    assert any(line.startswith("fitted") and line.endswith("no") for line in lines)
    assert "failing-case: fail: out of its band" in text
    assert "points at: word" in text


def test_json_has_one_object_per_case_with_the_criterion_band():
    import json

    doc = json.loads(render_json([_result("c", 4.0, 5.0, True)]))
    (case,) = doc["cases"]
    assert case["case"] == "c" and case["status"] == "pass"
    assert case["ratio"] == 1.25
    assert case["criterion"]["low"] == 2.0 and case["criterion"]["high"] == 8.0
    assert case["independent"] is True and case["fitted_values"] == []
    assert case["source"] == {"ref": "msg@example.org"}


def test_markdown_is_a_table_with_the_summary():
    text = render_markdown([_result("c", 4.0, 5.0, True)])
    assert text.splitlines()[0].startswith("| case | source |")
    assert "| c | `msg@example.org` |" in text
    assert "1 pass (1 independent), 0 fail, 0 error of 1" in text


def test_numbers_are_short():
    for v in (0.000123, 0.178, 5.51, 98.0, 1417.4, 45000.0, 4939048.0, -3.2e7):
        assert len(num(v)) <= 9
    assert num(None) == "-"
