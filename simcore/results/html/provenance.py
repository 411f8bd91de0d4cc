"""Where every profile and preset value a report's runs used comes from.

A number in a reply is only as good as the constants under it, so the
report lists each sourced value of the runs' hardware profiles and kernel
presets: the value in the file, the value the run used where the workload
changed it (an override, or a knob resolved from the CPU count), the
confidence mark, the source, what it was fitted to, and the status of the
validation cases it was fitted to.
"""

from __future__ import annotations

from simcore.errors import InputError
from simcore.results.html.page import esc, table
from simcore.results.html.validation import Validation, status_list
from simcore.results.provenance import SourcedValue, preset_sourced, profile_values

_HEAD = [
    "value",
    "in the file",
    "used",
    "confidence",
    "source",
    "fitted to",
    "validation of those",
]


def _used(section: dict, path: str) -> object:
    node: object = section
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _show(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "/".join(_show(v) for v in value)
    return "-" if value is None else str(value)


def _rows(
    values: tuple[SourcedValue, ...],
    users: list[tuple[str, dict]],
    v: Validation | None,
) -> list[str]:
    rows = []
    for sv in values:
        used = {label: _used(section, sv.path) for label, section in users}
        differ = {lb: u for lb, u in used.items() if u is not None and u != sv.value}
        if not differ:
            shown = "same"
        elif len(users) == 1:
            shown = _show(next(iter(differ.values())))
        else:
            shown = "; ".join(f"{lb}: {_show(u)}" for lb, u in differ.items())
        fitted = v.fitted_cases(sv.fitted_to) if v else []
        rows.append(
            f'<tr><td class="key"><code>{esc(sv.path)}</code></td>'
            f'<td class="val">{esc(_show(sv.value))}</td>'
            f'<td class="val">{esc(shown)}</td>'
            f'<td class="nowrap">{esc(sv.confidence or "-")}</td>'
            f'<td class="source">{esc(sv.source)}</td>'
            f'<td class="refs">{esc(", ".join(sv.fitted_to))}</td>'
            f"<td>{status_list(v, fitted)}</td></tr>"
        )
    return rows


def _users(runs: list[tuple[str, dict]], section: str, key: str) -> dict[str, list]:
    """Runs by the profile or preset they name: name -> [(label, section)]."""
    out: dict[str, list] = {}
    for label, cfg in runs:
        sec = cfg.get(section, {})
        out.setdefault(str(sec.get(key)), []).append((label, sec))
    return out


def provenance_html(runs: list[tuple[str, dict]], v: Validation | None) -> str:
    """``runs``: (column label, resolved config) of every folder shown."""
    parts = []
    for name, users in _users(runs, "machine", "profile").items():
        parts.append(f"<h3>hardware profile {esc(name)}</h3>")
        try:
            values = profile_values(name)
        except InputError:
            parts.append(
                '<p class="note">the profile file is not found from here; the '
                "values the run used are in its config below</p>"
            )
            continue
        parts.append(table(_HEAD, _rows(values, users, v)))
    for name, users in _users(runs, "kernel", "preset").items():
        parts.append(f"<h3>kernel preset {esc(name)}</h3>")
        try:
            values = preset_sourced(name)
        except KeyError:
            parts.append('<p class="note">no such preset in this simcore</p>')
            continue
        parts.append(table(_HEAD, _rows(values, users, v)))
    return "\n".join(parts)
