"""The validation status a report shows, read from ``simcore validate``'s
own output (``results/validate/<run-id>/results.json``).

Results never run simulations: when no such output is given or found the
report says validation was not run. Found means the runs under
``results/validate`` of the current directory or of the results tree the
report's folders sit in (``results/<name>/<run-id>``); a run folder or a
folder of runs can be given instead. Each case shows its newest full run
(``--quick`` runs only where a case has no full one), so a later
``simcore validate --case X`` updates X without hiding the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simcore.results.html.page import esc, table

NOT_RUN = (
    "not run: no validation results found (run `simcore validate`, or give "
    "its folder with --validation DIR)"
)


@dataclass(frozen=True)
class Validation:
    runs: tuple[Path, ...]  # the run folders read, oldest first
    cases: dict[str, dict]  # results.json cases, each with "run": its folder

    def touching(self, profiles: set[str], presets: set[str]) -> list[str]:
        """Cases that ran on one of these profiles or presets. Output of an
        older ``simcore validate`` does not record what each case ran on:
        then only the cases with a value fitted on them are known."""
        out = []
        for name, case in self.cases.items():
            if "profiles" in case or "presets" in case:
                hit = profiles & set(case.get("profiles", ())) or presets & set(
                    case.get("presets", ())
                )
            else:
                whats = {f"profile {p}:" for p in profiles} | {
                    f"preset {p}:" for p in presets
                }
                hit = any(
                    f.startswith(w)
                    for f in case.get("fitted_values", ())
                    for w in whats
                )
            if hit:
                out.append(name)
        return sorted(out)

    @property
    def unrecorded(self) -> bool:
        """Whether a case comes from output that does not say what it ran on."""
        return any(
            "profiles" not in c and "presets" not in c for c in self.cases.values()
        )

    def fitted_cases(self, fitted_to: tuple[str, ...]) -> list[str]:
        """Cases a value was fitted to: named, or by their source."""
        keys = set(fitted_to)
        return [
            name
            for name, case in self.cases.items()
            if name in keys or case.get("source", {}).get("ref") in keys
        ]


def _runs(root: Path) -> list[Path]:
    if (root / "results.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if (p / "results.json").is_file()]


def find_validation(
    folders: list[Path], given: Path | None = None
) -> Validation | None:
    """The validation output to show, or None. ``given`` is a run folder
    or a folder of runs; without it, see the module docstring."""
    if given is not None:
        roots = [given]
    else:
        roots = [Path("results") / "validate"]
        roots += [f.resolve().parent.parent / "validate" for f in folders]
    # run ids start with their time stamp: sorted by name is oldest first
    runs = sorted(
        {r.resolve() for root in roots for r in _runs(root)}, key=lambda p: p.name
    )
    cases: dict[str, dict] = {}
    read: list[Path] = []
    for quick in (True, False):  # full runs last, so they win
        for run in (r for r in runs if r.name.endswith("-quick") == quick):
            try:
                doc = json.loads((run / "results.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # half-written or foreign: not a status to show
            read.append(run)
            for name, case in doc.get("cases", {}).items():
                cases[name] = {**case, "run": run.name, "quick": doc.get("quick")}
    return Validation(tuple(read), dict(sorted(cases.items()))) if cases else None


def _status(case: dict) -> str:
    s = str(case.get("status", "?"))
    return f'<span class="{esc(s)}">{esc(s)}</span>'


def status_list(v: Validation | None, names: list[str]) -> str:
    """``case: status`` for each name, for a table cell."""
    if v is None:
        return ""
    return ", ".join(f"{esc(n)}: {_status(v.cases[n])}" for n in names if n in v.cases)


def validation_html(v: Validation | None, profiles: set[str], presets: set[str]) -> str:
    """The cases that ran on the report's profiles or presets, with their
    status; or why there is none."""
    if v is None:
        return f'<p class="note">{esc(NOT_RUN)}</p>'
    where = sorted({str(r.parent) for r in v.runs})
    intro = (
        f'<p class="note">read from {len(v.runs)} simcore validate '
        f"run{'s' if len(v.runs) > 1 else ''} in {esc(', '.join(where))}; "
        "each case as its newest full run left it</p>"
    )
    if v.unrecorded:
        intro += (
            '<p class="note">some cases come from an older simcore validate that '
            "did not record the profile and preset they ran on: those show only "
            "where a value was fitted to them</p>"
        )
    names = v.touching(profiles, presets)
    if not names:
        return intro + '<p class="note">no case ran on these profiles or presets</p>'
    rows = []
    for n in names:
        c = v.cases[n]
        crit = c.get("criterion") or {}
        rows.append(
            f"<tr><td>{esc(n)}</td><td>{_status(c)}</td>"
            f"<td>{'yes' if c.get('independent') else 'no'}</td>"
            f'<td class="num">{esc(_num(c.get("published")))}</td>'
            f'<td class="num">{esc(_num(c.get("simulated")))}</td>'
            f"<td>{esc(crit.get('text', ''))}</td>"
            f"<td>{esc(', '.join(c.get('profiles', [])))} "
            f"{esc(', '.join(c.get('presets', [])))}</td>"
            f"<td>{esc(c['run'])}{' (quick)' if c.get('quick') else ''}</td>"
            f"<td>{esc(c.get('title', ''))}</td></tr>"
        )
    head = [
        "case",
        "status",
        "independent",
        "published",
        "simulated",
        "criterion",
        "ran on",
        "run",
        "what",
    ]
    return intro + table(head, rows)


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)
