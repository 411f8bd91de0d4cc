"""The validation results folder, written atomically.

``results/validate/<run-id>/`` (or ``-o DIR``): ``table.txt`` (what the
command printed), ``results.json`` (every case's points, quantities,
verdict and runs, with the resolved config hash of each run, and the
profiles and presets it ran on, which ``simcore report --format html``
reads) and one chart per case as ``<case>.png`` and ``.svg``. As with
``simcore run``, the folder is built under a hidden name and renamed into
place when complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from simcore._version import __version__
from simcore.results.writer import staged_folder, unused_folder
from simcore.validate.charts import render_case_chart
from simcore.validate.runner import CaseResult
from simcore.validate.table import case_object, summary_line


def results_doc(results: list[CaseResult], *, quick: bool) -> dict:
    cases = {}
    for r in results:
        spec = r.case.spec
        cases[r.case.name] = {
            "title": spec.title,
            "area": spec.area,
            "suitability": spec.suitability,
            # what the case ran on, so a report can show the cases that
            # touch the profile and preset of a run
            "profiles": sorted(
                {run.resolved.data["machine"]["profile"] for run in r.case.runs}
            ),
            "presets": sorted({run.resolved.knobs.preset for run in r.case.runs}),
            **case_object(r),
            "published_points": _points(r.case.published),
            "simulated_points": _points(r.simulated),
            "error": r.error,
            "runs": r.runs,
            "wall_s": round(r.wall_s, 2),
        }
    return {
        "simcore_version": __version__,
        "quick": quick,
        "summary": summary_line(results),
        "cases": cases,
    }


def _points(points: dict[str, dict[float, float]]) -> dict:
    return {s: {f"{x:g}": y for x, y in sorted(p.items())} for s, p in points.items()}


def _run_id(results: list[CaseResult], quick: bool) -> str:
    h = hashlib.sha256()
    for r in results:
        h.update(Path(r.case.file).read_bytes())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{h.hexdigest()[:6]}" + ("-quick" if quick else "")


def write_validation(
    results: list[CaseResult],
    table: str,
    *,
    quick: bool,
    out_dir: str | None = None,
    base: str = "results",
) -> Path:
    if out_dir:
        target = Path(out_dir)
    else:
        target = unused_folder(Path(base) / "validate", _run_id(results, quick))
    with staged_folder(target) as tmp:
        (tmp / "table.txt").write_text(table, encoding="utf-8")
        doc = results_doc(results, quick=quick)
        (tmp / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
        for r in results:
            render_case_chart(r, tmp)
    return target
