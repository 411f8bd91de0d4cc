"""``simcore validate --quick``, end to end, as the test suite runs it."""

from __future__ import annotations

import json
import time

from simcore.cli import main
from simcore.validate.spec import case_files

# the budget for the quick suite on a loaded machine
BUDGET_S = 120


def test_quick_validation_runs_every_case_in_budget(tmp_path, capsys):
    out = tmp_path / "val"
    t0 = time.monotonic()
    code = main(["validate", "--quick", "-o", str(out)])
    elapsed = time.monotonic() - t0
    printed = capsys.readouterr().out
    assert elapsed < BUDGET_S, f"validate --quick took {elapsed:.0f}s"
    doc = json.loads((out / "results.json").read_text())
    statuses = {name: c["status"] for name, c in doc["cases"].items()}
    assert set(statuses) == {p.stem for p in case_files()}
    # exit code 1 when any case fails or errors; a fail is a result, an
    # error is a bug
    assert set(statuses.values()) <= {"pass", "fail", "error"}
    failing = [n for n, s in statuses.items() if s != "pass"]
    assert code == (1 if failing else 0), failing
    assert "error" not in statuses.values(), doc
    table = (out / "table.txt").read_text()
    assert table in printed
    assert max(len(line) for line in table.splitlines()) <= 80
    for name in statuses:
        assert (out / f"{name}.png").stat().st_size > 0
        assert (out / f"{name}.svg").stat().st_size > 0
        assert name in table
