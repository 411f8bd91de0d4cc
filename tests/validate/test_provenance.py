"""Provenance: a value chosen from a case's publication says so, and a
case running on such a value is not independent."""

from __future__ import annotations

import pytest

from simcore.validate import provenance
from simcore.validate.provenance import SourcedValue, all_values, fitted_values
from simcore.validate.spec import case_files, load_case
from tests.validate import GOOD, write_case

CASES = [load_case(p) for p in case_files()]


def _numeric(v: SourcedValue) -> bool:
    return isinstance(v.value, int | float) and not isinstance(v.value, bool)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_value_quoting_a_case_source_names_it_in_fitted_to(case):
    # A number quoting a publication was chosen or derived from it. A design
    # switch (a preset's global or per_node locks, a CPU's broadcast
    # invalidation) cites the commit or manual that says it exists: that is
    # a fact of the era or the part, not a fitted number.
    ref = case.spec.source.ref
    missing = [
        v.where
        for v in all_values()
        if ref in v.source and _numeric(v) and not {ref, case.name} & set(v.fitted_to)
    ]
    assert not missing, f"quote {ref} but do not name it in fitted_to: {missing}"


def test_a_case_on_a_value_fitted_to_it_is_not_independent(tmp_path, monkeypatch):
    case = load_case(write_case(tmp_path, GOOD))
    assert fitted_values(case) == []
    real = provenance.profile_values

    def tainted(name):
        return (
            *real(name),
            SourcedValue("profile x: flush.y", "s", ("msg@example.org",), 1.0),
        )

    monkeypatch.setattr(provenance, "profile_values", tainted)
    assert fitted_values(case) == ["profile x: flush.y"]


def test_the_shootdown_cases_run_on_an_ipi_round_fitted_to_their_source():
    case = next(c for c in CASES if c.name == "shootdown-ipi-cost")
    where = fitted_values(case)
    assert any("ipi_round_median_ns" in w for w in where), where
