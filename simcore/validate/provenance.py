"""Provenance: which profile and preset values a case runs on were fitted to it.

Every sourced value in ``hw_profiles/*.yaml`` and ``simcore/kernel/presets.yaml``
may name, under ``fitted_to``, the validation cases (by name) or the
publications (by Message-ID or commit) it was chosen or derived from. A case
depends on every value of the profiles and presets its runs resolve to; it is
**independent** when none of those values names the case or its source.
That is conservative on purpose: a value fitted to a case's publication
taints the case even if the case's measure hardly reads it.
"""

from __future__ import annotations

from simcore.kernel.presets import presets
from simcore.profile import available_profiles

# the reading is shared with the HTML report, which lists the same values
from simcore.results.provenance import SourcedValue, preset_sourced, profile_values
from simcore.validate.spec import Case

__all__ = [
    "SourcedValue",
    "all_values",
    "case_values",
    "fitted_values",
    "preset_sourced",
    "profile_values",
]


def all_values() -> list[SourcedValue]:
    out: list[SourcedValue] = []
    for name in available_profiles():
        out += profile_values(name)
    for name in presets():
        out += preset_sourced(name)
    return out


def case_values(case: Case) -> list[SourcedValue]:
    """Every sourced value the case's runs resolve to."""
    profiles = {r.resolved.data["machine"]["profile"] for r in case.runs}
    eras = {r.resolved.knobs.preset for r in case.runs}
    out: list[SourcedValue] = []
    for p in sorted(profiles):
        out += profile_values(p)
    for e in sorted(eras):
        out += preset_sourced(e)
    return out


def fitted_values(case: Case) -> list[str]:
    """Where the values fitted to this case or to its source sit."""
    keys = {case.name, case.spec.source.ref}
    own = [f"case {case.name}: {text}" for text in case.spec.fitted]
    return own + [v.where for v in case_values(case) if keys & set(v.fitted_to)]
