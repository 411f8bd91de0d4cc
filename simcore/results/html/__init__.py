"""``simcore report --format html``: one self-contained page to link from
a thread.

The page holds the summary table (headline first), the charts as inline
SVG, each folder's resolved config, the provenance of every profile and
preset value the runs used, and the status of the validation cases that
ran on them, read from ``simcore validate``'s output when there is some.
It loads nothing from anywhere: no scripts, style sheets, fonts or images
outside the file. Built from results folders alone, like the rest of
``results/``; nothing here runs a simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simcore.results.comparison import Comparison
from simcore.results.html.page import esc, page
from simcore.results.html.provenance import provenance_html
from simcore.results.html.svg import charts_html
from simcore.results.html.tables import comparison_html, config_html
from simcore.results.html.validation import Validation, find_validation, validation_html

__all__ = ["RunInfo", "find_validation", "render_html"]


@dataclass(frozen=True)
class RunInfo:
    """One results folder as the page shows it."""

    label: str  # its column label, or the folder name
    config: dict  # config.yaml, parsed
    config_text: str  # config.yaml as written


def render_html(
    comp: Comparison,
    charts: Path,
    runs: list[RunInfo],
    validation: Validation | None,
) -> str:
    """The page; ``charts`` is a folder holding the charts' SVG files."""
    profiles = {str(r.config["machine"]["profile"]) for r in runs}
    presets = {str(r.config["kernel"]["preset"]) for r in runs}
    sections = [
        ("summary", "Summary", comparison_html(comp)),
        ("charts", "Charts", charts_html(charts)),
        ("validation", "Validation", validation_html(validation, profiles, presets)),
        (
            "provenance",
            "Where the constants come from",
            provenance_html([(r.label, r.config) for r in runs], validation),
        ),
        (
            "config",
            "Resolved config",
            config_html([(f"{r.label}: config.yaml", r.config_text) for r in runs]),
        ),
    ]
    intro = "".join(f'<p class="note">{esc(n)}</p>' for n in _intro(runs))
    return page(comp.title, intro, sections)


def _intro(runs: list[RunInfo]) -> list[str]:
    names = ", ".join(r.label for r in runs)
    return [
        f"simcore report of {names}; every figure below is read from the "
        "results folders, and `simcore run` on the config below reproduces it"
    ]
